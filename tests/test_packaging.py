"""The package's declared dependencies, environment.yaml, the CLI and the library's habits agree."""

from __future__ import annotations

import ast
import functools
import json
import logging
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: modules of this repository (not distributions)
LOCAL = {"brainnet", "tests", "scripts", "benchmarks", "_mini_cache", "_fuzz", "conftest"}
#: library modules whose print() is the user-facing output of a command
PRINTS_ALLOWED = {"brainnet/cli.py", "brainnet/demo.py"}


def _names(reqs):
    return {re.split(r"[\[<>=!~ ;]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    """Core dependencies and each extra's own (self references such as brainnet[...] left out)."""
    extras = {k: _names(v) - {"brainnet"} for k, v in PROJECT["optional-dependencies"].items()}
    return _names(PROJECT["dependencies"]), extras


def _imports(source: str) -> set[str]:
    """Top-level names of the absolute imports in ``source``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - LOCAL


def _sources(*folders: str) -> dict[str, str]:
    """Relative path -> Python source of every .py file and notebook code under ``folders``."""
    out = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            out[path.relative_to(ROOT).as_posix()] = path.read_text()
        for path in sorted((ROOT / folder).glob("*.ipynb")):
            cells = json.loads(path.read_text())["cells"]
            out[path.relative_to(ROOT).as_posix()] = "\n".join(
                "".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return out


@functools.cache
def _distribution(module: str) -> str:
    dists = _installed().get(module) or [module]
    return dists[0].lower().replace("_", "-")


@functools.cache
def _installed() -> dict[str, list[str]]:
    return packages_distributions()


def test_environment_yaml_lists_every_dependency():
    core, extras = _declared()
    wanted = core.union(*extras.values())
    text = (ROOT / "environment.yaml").read_text()
    listed = _names(m.group(1) for m in re.finditer(r"^\s+-\s+([A-Za-z0-9_.\-\[\]]+)\s*$", text, re.M))
    missing = wanted - listed
    assert not missing, f"environment.yaml lacks {sorted(missing)}"
    assert "name: brainnet" in text


def test_all_extra_holds_every_extra_and_make_installs_it():
    extras = PROJECT["optional-dependencies"]
    (ref,) = [r for r in extras["all"] if r.startswith("brainnet[")]
    assert set(ref[len("brainnet["):-1].split(",")) == set(extras) - {"all"}
    assert "-e '.[all]'" in (ROOT / "Makefile").read_text()


def test_every_import_is_declared_and_every_core_dependency_is_used():
    """Library, notebooks, tests, benchmarks and scripts import only declared distributions; each core
    dependency is imported by the library itself (nothing declared for nothing)."""
    core, extras = _declared()
    declared = core.union(*extras.values())
    undeclared = {}
    for rel, source in _sources("brainnet", "notebooks", "tests", "benchmarks", "scripts").items():
        for module in _imports(source):
            if _distribution(module) not in declared:
                undeclared.setdefault(_distribution(module), []).append(rel)
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    used = {_distribution(m) for source in _sources("brainnet").values() for m in _imports(source)}
    assert not core - used, f"core dependencies that brainnet/ never imports: {sorted(core - used)}"


def test_library_logs_instead_of_printing():
    printing = sorted(rel for rel, source in _sources("brainnet").items() if rel not in PRINTS_ALLOWED and any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
        for n in ast.walk(ast.parse(source))))
    assert not printing, f"print() in library modules (use logging.getLogger(__name__)): {printing}"
    import brainnet

    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger(brainnet.__name__).handlers)


def test_prepare_reports_through_the_brainnet_logger(tmp_path_factory, caplog):
    from brainnet.data.prep import prepare

    from _mini_cache import PREPARE_KW, mini_tree, prepared_tiny

    out, tree = prepared_tiny(tmp_path_factory), mini_tree(tmp_path_factory)
    caplog.clear()  # the fixture's own prepare call may have logged (another test may have set the level)
    with caplog.at_level(logging.INFO, logger="brainnet"):
        assert prepare(tree.nsd, tree.algonauts, out, **PREPARE_KW) == out
    (record,) = [r for r in caplog.records if r.name == "brainnet.data.prep.pipeline"]
    assert record.levelno == logging.INFO and "nothing to do" in record.getMessage()


def test_cli_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "brainnet.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for cmd in ("make-mini-nsd", "prepare", "demo"):
        assert cmd in out


def test_cli_rejects_bad_subjects():
    res = subprocess.run(
        [sys.executable, "-m", "brainnet.cli", "prepare", "--nsd-dir", "x", "--alg-dir", "y", "--out-dir", "z",
         "--subjects", "one"],
        capture_output=True, text=True,
    )
    assert res.returncode != 0
    assert "--subjects" in res.stderr + res.stdout


def test_cli_make_mini_nsd_with_subject_count(tmp_path):
    """--subjects on a preset with per-subject sessions repeats the pattern instead of failing."""
    from brainnet.cli import main
    from brainnet.data.mini.generate import MiniNSDConfig

    out = tmp_path / "mini"
    assert main(["make-mini-nsd", str(out), "--preset", "tiny", "--subjects", "1", "--sessions", "4"]) == 0
    assert (out / "nsd" / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat").is_file()
    assert (out / "algonauts2023" / "subj01").is_dir() and not (out / "algonauts2023" / "subj02").exists()
    assert isinstance(MiniNSDConfig.preset("default").n_sessions, tuple)


def test_ruff_is_clean():
    """The linter configured in pyproject.toml finds nothing (``make lint``)."""
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-1000:]


def test_no_module_over_400_lines_and_no_import_cycles():
    """Modules stay small, and no brainnet module imports another that (directly or not) imports it at load."""
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in (ROOT / "brainnet").rglob("*.py")}
    assert {k: v for k, v in sizes.items() if v > 400} == {}
    paths = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (ROOT / "brainnet").rglob("*.py")}
    graph = {name: set() for name in paths}
    for name, path in paths.items():
        for node in ast.parse(path.read_text()).body:  # load-time imports (not TYPE_CHECKING, not in functions)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("brainnet"):
                # `from pkg import submodule` needs the submodule; `from mod import name` needs mod
                graph[name].update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths else node.module
                                   for a in node.names)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name.startswith("brainnet"))
    graph = {k: {d for d in v if d in graph and d != k} for k, v in graph.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for dep in graph[todo.pop()] - seen:
                if dep == goal:
                    return True
                seen.add(dep)
                todo.append(dep)
        return False

    # a package's __init__ may import its own submodules; a cycle is a module reachable from itself
    # through modules other than its parent packages' __init__ files
    cycles = [m for m in graph if any(reaches(d, m) for d in graph[m] if not m.startswith(d + "."))]
    assert cycles == []
