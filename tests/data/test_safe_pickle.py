"""No data file runs code: mapping files are unpickled with a numpy-only unpickler, checkpoints with
``weights_only=True``, and nothing else in the library unpickles."""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from brainnet.data.formats.algonauts import read_roi_mapping
from brainnet.data.formats.safe_pickle import load_object_npy
from brainnet.errors import DataFormatError

LIBRARY = Path(__file__).resolve().parents[2] / "brainnet"


def _npy_with_pickle(path: Path, payload: bytes) -> Path:
    """An object-dtype 0-d ``.npy`` header followed by ``payload`` (any pickle bytes)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    path.write_bytes(buf.getvalue() + payload)
    return path


class _RunsCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_release_mapping_reads(tmp_path):
    mapping = {0: "Unknown", 1: "V1v", np.int64(2): "V1d"}
    path = tmp_path / "mapping_prf-visualrois.npy"
    np.save(path, np.array(mapping, dtype=object), allow_pickle=True)
    assert read_roi_mapping(path) == {0: "Unknown", 1: "V1v", 2: "V1d"}


def test_numpy1_pickle_reads(tmp_path):
    """A file written by numpy 1.x names ``numpy.core.multiarray`` (protocol 2/3 GLOBAL opcodes)."""
    payload = pickle.dumps(np.array({0: "Unknown", 3: "EBA"}, dtype=object), protocol=2)
    old = payload.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert old != payload
    path = _npy_with_pickle(tmp_path / "mapping_floc-bodies.npy", old)
    assert read_roi_mapping(path) == {0: "Unknown", 3: "EBA"}


@pytest.mark.parametrize("protocol", [2, 4])
def test_code_in_a_mapping_never_runs(tmp_path, protocol):
    marker = tmp_path / "ran"
    path = tmp_path / "mapping_floc-faces.npy"
    bad = np.empty((), dtype=object)
    bad[()] = {0: "Unknown", 1: _RunsCommand(marker)}
    np.save(path, bad, allow_pickle=True) if protocol == 4 else _npy_with_pickle(path, pickle.dumps(bad, protocol=2))
    with pytest.raises(DataFormatError, match=r"mapping_floc-faces\.npy.*(posix|os)\.system \(refused, not run\)"):
        read_roi_mapping(path)
    assert not marker.exists()
    # the same file through numpy's own loader would have run it (the hazard is real)
    np.load(path, allow_pickle=True)
    assert marker.exists()


def test_not_a_pickle(tmp_path):
    plain = tmp_path / "mapping_streams.npy"
    np.save(plain, np.arange(3))
    with pytest.raises(DataFormatError, match="0-d object array"):
        read_roi_mapping(plain)
    garbage = _npy_with_pickle(tmp_path / "g.npy", b"\x80\x04not a pickle")
    with pytest.raises(DataFormatError, match="readable pickle"):
        load_object_npy(garbage, "a dict")
    (tmp_path / "h.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(DataFormatError, match="bad header"):
        load_object_npy(tmp_path / "h.npy", "a dict")


def test_library_never_unpickles_unchecked():
    """Every ``torch.load`` passes ``weights_only=True``; no ``np.load(allow_pickle=True)``, no
    ``pickle.load`` outside the safe reader."""
    offenders = []
    for path in sorted(LIBRARY.rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(LIBRARY.parent)
        for call in re.finditer(r"torch\.load\(", text):
            if "weights_only=True" not in text[call.start(): call.start() + 160]:
                offenders.append(f"{rel}: torch.load without weights_only=True")
        if re.search(r"np\.load\([^)]*allow_pickle=True", text):
            offenders.append(f"{rel}: np.load(allow_pickle=True)")
        if re.search(r"pickle\.loads?\(|Unpickler\(", text) and path.name != "safe_pickle.py":
            offenders.append(f"{rel}: unpickles")
        if "weights_only=False" in text:
            offenders.append(f"{rel}: weights_only=False")
    assert not offenders, offenders
    assert (LIBRARY / "training" / "fit.py").read_text().count("weights_only=True") >= 2
