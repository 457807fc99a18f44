"""Run brainnet's notebooks in batch with papermill: executed notebooks, HTML, figures, key numbers.

``run_demo(out_dir)`` executes ``notebooks/NN_*.ipynb`` in order. Each notebook gets
``OUT_DIR = out_dir/<notebook stem>`` (where it writes its figures and ``key_numbers.json``) and
``DATA_HOME = out_dir/data`` (where nsd-mini is generated and prepared once), plus any
user parameters. The layout of ``out_dir`` afterwards::

    out_dir/
      data/                        nsd-mini source trees and the prepared dataset
      01_prepare/                  figures (*.png), key_numbers.json
      01_prepare.ipynb             the executed notebook
      01_prepare.html              its HTML export
      ...
      explorer.html                the notebooks' maps in one interactive page (brainnet.explorer.collect)
      summary.json                 wall time per notebook and every notebook's key numbers
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from brainnet.data.io import atomic_path, save_text

log = logging.getLogger(__name__)

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def _parse_value(text: str):
    """'3' -> 3, '[1, 2]' -> [1, 2], 'true' -> True, anything else stays a string."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


def find_notebooks(names: Sequence[str] | None = None, notebook_dir: Path | None = None) -> list[Path]:
    """The notebooks to run, in order.

    ``names`` are stems or file names (``"01_prepare"``, ``"02_train_mem.ipynb"``); None = every
    ``NN_*.ipynb`` in ``notebook_dir`` (default: the repository's ``notebooks/``).
    """
    folder = Path(notebook_dir) if notebook_dir is not None else NOTEBOOK_DIR
    if not folder.is_dir():
        raise FileNotFoundError(
            f"notebook folder {folder} not found: run the demo from a clone of the brainnet repository"
        )
    available = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return available
    chosen = []
    for name in names:
        stem = Path(name).stem
        match = [p for p in available if p.stem == stem or p.stem.startswith(stem + "_") or p.stem[:2] == stem]
        if not match:
            raise FileNotFoundError(f"no notebook named {name!r} in {folder}; have {[p.stem for p in available]}")
        chosen.append(match[0])
    return chosen


def run_demo(
    out_dir: str | os.PathLike = "demo_out",
    notebooks: Sequence[str] | None = None,
    parameters: Mapping[str, object] | None = None,
    html: bool = True,
    kernel_name: str | None = None,
) -> dict:
    """Execute the notebooks with papermill and collect their outputs.

    Parameters
    ----------
    out_dir : folder for executed notebooks, HTML, figures and key numbers.
    notebooks : stems to run (default: all, in order).
    parameters : extra papermill parameters given to every notebook; string values are parsed as
        JSON when they can be (so ``"3"`` becomes 3 and ``"[1,2]"`` a list).
    html : also export each executed notebook to HTML.

    Returns the summary dict also written to ``out_dir/summary.json``. Progress goes to the
    ``brainnet.demo`` logger at INFO level.
    """
    import papermill as pm

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    params = {k: (_parse_value(v) if isinstance(v, str) else v) for k, v in (parameters or {}).items()}
    params.setdefault("DATA_HOME", str(out / "data"))
    summary: dict = {"notebooks": {}, "parameters": {k: str(v) for k, v in params.items()}}
    paths = find_notebooks(notebooks)
    t_all = time.perf_counter()
    for i, nb in enumerate(paths, 1):
        nb_out_dir = out / nb.stem
        nb_out_dir.mkdir(exist_ok=True)
        log.info("[%d/%d] %s ...", i, len(paths), nb.name)
        t0 = time.perf_counter()
        executed = out / nb.name
        pm.execute_notebook(
            str(nb),
            str(executed),
            parameters={**params, "OUT_DIR": str(nb_out_dir)},
            progress_bar=False,
            cwd=str(nb.parent),
            kernel_name=kernel_name,
        )
        wall = time.perf_counter() - t0
        if html:
            _export_html(executed, out / f"{nb.stem}.html")
        key_file = nb_out_dir / "key_numbers.json"
        key = json.loads(key_file.read_text()) if key_file.exists() else None
        figures = sorted(p.name for p in nb_out_dir.glob("*.png"))
        summary["notebooks"][nb.stem] = {"wall_s": round(wall, 1), "figures": figures, "key_numbers": key}
        log.info("[%d/%d] %s done in %.0f s, %d figures", i, len(paths), nb.name, wall, len(figures))
    summary["explorer"] = _gather_explorer(out, [nb.stem for nb in paths])
    summary["wall_s"] = round(time.perf_counter() - t_all, 1)
    save_text(out / "summary.json", json.dumps(summary, indent=2))
    log.info("demo finished in %.0f s: %s", summary["wall_s"], out)
    return summary


def _gather_explorer(out: Path, stems: list[str]) -> str | None:
    """``out/explorer.html``: every notebook's explorer inputs in one page (None when no notebook saved any)."""
    from brainnet.explorer.collect import INPUTS_FILE, gather

    found = {stem: out / stem / INPUTS_FILE for stem in stems if (out / stem / INPUTS_FILE).is_file()}
    if not found:
        return None
    path = gather(found, title="brainnet demo: " + ", ".join(found), strict=False).save_html(out / "explorer.html")
    log.info("explorer of %s: %s", ", ".join(found), path)
    return str(path)


def _export_html(notebook: Path, target: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(notebook), as_version=4))
    with atomic_path(target) as tmp:
        tmp.write_text(body, encoding="utf-8")
