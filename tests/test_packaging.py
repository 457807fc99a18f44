"""The package's declared dependencies, environment.yaml and the CLI agree."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _names(reqs):
    return {re.split(r"[\[<>=!~ ;]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_environment_yaml_lists_every_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= _names(extra)
    text = (ROOT / "environment.yaml").read_text()
    listed = _names(m.group(1) for m in re.finditer(r"^\s+-\s+([A-Za-z0-9_.\-\[\]]+)\s*$", text, re.M))
    missing = wanted - listed
    assert not missing, f"environment.yaml lacks {sorted(missing)}"
    assert "name: brainnet" in text


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
