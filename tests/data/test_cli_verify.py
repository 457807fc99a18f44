"""``brainnet verify DIR``: one line on success, ``brainnet: error: ...`` and exit 2 on a bad dataset."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from brainnet.cli import main
from brainnet.data import PreparedDataset

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
