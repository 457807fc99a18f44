"""The command line: one line on success, ``brainnet: error: ...`` and exit 2 on bad input (--debug: traceback)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from brainnet.cli import main
from brainnet.data import PreparedDataset
from brainnet.errors import DataFormatError

from _mini_cache import prepared_tiny


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return prepared_tiny(tmp_path_factory)


def test_verify_prints_one_line(root, capsys):
    assert main(["verify", "--quiet", str(root)]) == 0
    out, err = capsys.readouterr()
    n = len(PreparedDataset(root).manifest["files"])
    assert out == f"{root}: {n} files verified\n" and n > 10
    assert "Traceback" not in err


def test_verify_names_a_changed_file(root, tmp_path, capsys):
    bad = shutil.copytree(root, tmp_path / "copy")
    path = bad / "subj01" / "behaviour.npy"
    arr = np.load(path)
    arr[0, 0] += 1.0  # same size and header: only the hash tells
    np.save(path, arr)
    assert main(["verify", "--quiet", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("brainnet: error: ") and "subj01/behaviour.npy" in err and "sha256" in err
    assert "Traceback" not in err


def test_verify_reports_a_truncated_file_on_open(root, tmp_path, capsys):
    bad = shutil.copytree(root, tmp_path / "copy")
    fmri = bad / "subj02" / "fmri.npy"
    with open(fmri, "r+b") as fh:
        fh.truncate(fmri.stat().st_size - 10)
    assert main(["verify", "--quiet", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("brainnet: error: ") and "subj02/fmri.npy" in err


def test_verify_exit_code_from_the_shell(tmp_path):
    """A folder that is no prepared dataset: exit status 2, one error line, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "brainnet.cli", "verify", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("brainnet: error: ") and "manifest.json" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_prepare_error_is_one_line(tmp_path):
    """A bad source tree: one ``brainnet: error: <path>: expected ..., found ...`` line, exit 2,
    nothing written; ``--debug`` / ``BRAINNET_DEBUG=1`` give the traceback instead."""
    nsd, alg, out = tmp_path / "nsd", tmp_path / "alg", tmp_path / "out"
    (alg / "subj01").mkdir(parents=True)
    argv = ["prepare", "--nsd-dir", str(nsd), "--alg-dir", str(alg), "--out-dir", str(out)]
    proc = subprocess.run([sys.executable, "-m", "brainnet.cli", *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"brainnet: error: {nsd}: expected "), proc.stderr
    assert ", found " in lines[0] and not out.exists()
    with pytest.raises(DataFormatError, match="expected"):
        main(["--debug", *argv])


def test_debug_env_and_user_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BRAINNET_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        main(["verify", str(tmp_path)])
    monkeypatch.setenv("BRAINNET_DEBUG", "0")
    assert main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
