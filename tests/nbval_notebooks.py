"""Copies of the notebooks for nbval, with papermill's injected parameters (nothing is executed).

``python tests/nbval_notebooks.py notebooks build/nbval --preset tiny --param EPOCHS=1`` writes
``build/nbval/NN_name.ipynb`` for every ``notebooks/NN_*.ipynb``, each set to generate nsd-mini of
``--preset`` into one data home (``build/nbval/data``), to write its outputs to ``build/nbval/out/NN_name``
and to take every ``--param NAME=VALUE`` it declares (VALUE a Python literal, else a string). nbval then
runs the copies as they are (``make test``); the notebooks' own defaults stay those of a real run.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import papermill as pm


def _param(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="folder of the notebooks")
    parser.add_argument("dst", type=Path, help="folder for the parameterised copies")
    parser.add_argument("--preset", default="tiny", help="nsd-mini preset (MINI_PRESET)")
    parser.add_argument("--param", type=_param, action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter for the notebooks that declare it (repeatable)")
    args = parser.parse_args(argv)
    dst = args.dst.resolve()
    notebooks = sorted(args.src.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        parser.error(f"no notebooks NN_*.ipynb in {args.src}")
    dst.mkdir(parents=True, exist_ok=True)
    for nb in notebooks:
        declared = set(pm.inspect_notebook(str(nb)))
        params = {"MINI_PRESET": args.preset, "DATA_HOME": str(dst / "data"), "OUT_DIR": str(dst / "out" / nb.stem)}
        params.update((k, v) for k, v in args.param if k in declared)
        pm.execute_notebook(str(nb), str(dst / nb.name), parameters=params, prepare_only=True, log_output=False,
                            progress_bar=False)
        print(f"{dst / nb.name}: {params}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
