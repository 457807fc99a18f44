"""The trial-major fMRI path of ``prepare`` against the straightforward one: betas read trial-major equal
the vertex-major reader's, transposed; ``zscore_trials`` equals ``zscore_session`` bit for bit."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from brainnet.data.formats import nsd
from brainnet.data.prep import zscore
from brainnet.data.prep.tables import zscore_session
from brainnet.errors import DataFormatError

T = 37  # trials: not a multiple of zscore.ROW_CHUNK nor of the reader's chunk


def _columns(rng, v: int) -> np.ndarray:
    """float32 [T, v]: columns of many scales and offsets, plus the awkward ones (constant, integer
    ties, NaN, all NaN, inf, -0.0, huge, tiny)."""
    x = rng.normal(size=(T, v)) * rng.lognormal(0, 4, size=v) + rng.normal(size=v) * rng.lognormal(0, 4, size=v)
    x[:, 0] = 2.5
    x[:, 1:40] = np.round(x[:, 1:40])
    x[3, 40] = np.nan
    x[:, 41] = np.nan
    x[0, 42], x[1, 43], x[2, 43] = np.inf, -np.inf, 1.0
    x[:, 44] = -0.0
    x[:, 45] *= 1e30
    x[:, 46] *= 1e-30
    x[:, 47] = 1e6 + np.arange(T) % 3
    return x.astype(np.float32)


def _run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = np.full(x.shape, np.nan, np.float16)
    seen = []

    def emit(row, block):
        assert block.dtype == np.float16 and 0 < block.shape[0] <= zscore.ROW_CHUNK
        seen.append((row, block.shape[0]))
        out[row:row + block.shape[0]] = block

    has_nan = zscore.zscore_trials(x, emit)
    assert [r for r, _ in seen] == list(range(0, T, zscore.ROW_CHUNK)) and sum(n for _, n in seen) == T
    return out, has_nan


def _reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        z, has_nan = zscore_session(np.ascontiguousarray(x.T))
    return z.T.astype(np.float16), has_nan


def test_zscore_trials_is_the_reference_bit_for_bit(rng):
    x = _columns(rng, 3000)
    before = x.copy()
    out, has_nan = _run(x)
    ref, ref_nan = _reference(x)
    assert np.array_equal(out.view(np.uint16), ref.view(np.uint16))
    assert np.array_equal(has_nan, ref_nan) and has_nan[[40, 41]].all() and not has_nan[[42, 43]].any()
    assert np.array_equal(x.view(np.uint32), before.view(np.uint32))  # x is only read
    redo = zscore.session_scales(x).redo
    assert {40, 41, 42, 43} <= set(redo.tolist()) and redo.size < 100  # the others: the certified path


def test_zscore_trials_uncertain_columns_go_to_the_reference(rng, monkeypatch):
    """With a far too wide error bound every column is 'uncertain': the reference computes them all."""
    monkeypatch.setattr(zscore, "_gamma", lambda n: 1e-3)
    x = _columns(rng, 500)
    assert zscore.session_scales(x).redo.size > 400
    out, has_nan = _run(x)
    ref, ref_nan = _reference(x)
    assert np.array_equal(out.view(np.uint16), ref.view(np.uint16)) and np.array_equal(has_nan, ref_nan)


@pytest.mark.parametrize("suffix", [".mgh", ".mgz"])
def test_read_betas_trials_is_read_betas_transposed(tmp_path, rng, suffix):
    data = rng.normal(size=(37, 11)).astype(np.float32)
    data[5] = np.nan
    path = tmp_path / f"lh.betas_session01{suffix}"
    nib.save(nib.MGHImage(data[:, None, None, :], np.eye(4)), str(path))
    rows = np.array([30, 2, 5, 36, 0])
    wide = np.zeros((11, 9), np.float32)
    nsd.read_betas_trials(path, rows, wide[:, 2:7], n_vertices=37, frames_per_chunk=4)
    assert np.array_equal(wide[:, 2:7].T, nsd.read_betas(path, rows, 37, 11), equal_nan=True)
    assert not wide[:, [0, 1, 7, 8]].any()
    with pytest.raises(DataFormatError, match="38 vertices"):
        nsd.read_betas_trials(path, rows, wide[:, 2:7], n_vertices=38)
    if suffix == ".mgh":
        path.write_bytes(path.read_bytes()[: 284 + 4 * 37 * 6])
        with pytest.raises(DataFormatError, match="truncated"):
            nsd.read_betas_trials(path, rows, wide[:, 2:7], frames_per_chunk=4)
