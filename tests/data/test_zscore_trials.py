"""The trial-major fMRI path of ``prepare`` against the straightforward one: betas read trial-major equal
the vertex-major reader's, transposed; ``zscore_trials`` equals ``zscore_session`` bit for bit."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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


def _run(x: np.ndarray, helped: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """zscore_trials of x, alone or with a helper thread doing half the rows (another float64 summation
    order, both threads emitting)."""
    out = np.full(x.shape, np.nan, np.float16)
    seen = []

    def emit(row, block):
        assert block.dtype == np.float16 and 0 < block.shape[0] <= zscore.ROW_CHUNK
        seen.append((row, block.shape[0]))
        out[row:row + block.shape[0]] = block

    with ThreadPoolExecutor(1) as helper:
        has_nan = zscore.zscore_trials(x, emit, helper if helped else None)
    assert sorted(r for r, _ in seen) == list(range(0, T, zscore.ROW_CHUNK)) and sum(n for _, n in seen) == T
    return out, has_nan


def _reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        z, has_nan = zscore_session(np.ascontiguousarray(x.T))
    return z.T.astype(np.float16), has_nan


@pytest.mark.parametrize("helped", [False, True])
def test_zscore_trials_is_the_reference_bit_for_bit(rng, helped):
    x = _columns(rng, 3000)
    before = x.copy()
    out, has_nan = _run(x, helped)
    ref, ref_nan = _reference(x)
    assert np.array_equal(out.view(np.uint16), ref.view(np.uint16))
    assert np.array_equal(has_nan, ref_nan) and has_nan[[40, 41]].all() and not has_nan[[42, 43]].any()
    assert np.array_equal(x.view(np.uint32), before.view(np.uint32))  # x is only read
    redo = zscore.session_scales(x).redo
    assert {40, 41, 42, 43} <= set(redo.tolist()) and redo.size < 100  # the others: the certified path


@pytest.mark.parametrize("helped", [False, True])
def test_zscore_trials_uncertain_columns_go_to_the_reference(rng, monkeypatch, helped):
    """With a far too wide error bound every column is 'uncertain': the reference computes them all."""
    monkeypatch.setattr(zscore, "_gamma", lambda n: 1e-3)
    x = _columns(rng, 500)
    assert zscore.session_scales(x).redo.size > 400
    out, has_nan = _run(x, helped)
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


@pytest.mark.parametrize("where", ["reading (left)", "reading (right)", "writing (caller)", "writing (helper)"])
def test_stage_error_stops_cleanly_and_resumes(tree, tmp_path, monkeypatch, where):
    """The fMRI stage reads the next session in a thread (the right hemisphere's file in another) while
    the caller and a helper thread z-score and write one. A read of either file failing at session 3,
    or the writing of session 3 failing in the caller (its second half of the trials) or in the helper
    (the first half), raises that error from ``write_subject_fmri``, leaves no thread running and no
    final file, keeps the done markers of the sessions before it; a rerun finishes them and gives the
    bytes of an uninterrupted run."""
    import threading

    from brainnet.data.prep import write
    from brainnet.data.prep.config import PrepareConfig
    from brainnet.data.prep.plan import make_plan

    subject = make_plan(tree.nsd, tree.algonauts, PrepareConfig()).subjects[0]
    assert len(subject.betas) >= 4
    clean = tmp_path / "clean"
    write.write_subject_fmri(subject, clean / "stage", clean / "work", progress=False)

    bad = str(subject.betas[2][where == "reading (right)"])  # session 3
    if where.startswith("reading"):
        real = nsd.read_betas_trials

        def failing(path, *args, **kw):
            if str(path) == bad:
                raise OSError(5, "Input/output error", bad)
            return real(path, *args, **kw)

        monkeypatch.setattr(write.nsd, "read_betas_trials", failing)
    else:
        real_rows, calls = write.zscore_rows, []

        def failing(x, scales, emit, helper):
            calls.append(1)

            def emit_or_fail(row, block):
                in_caller = threading.current_thread() is threading.main_thread()
                if len(calls) == 3 and in_caller == (where == "writing (caller)"):
                    raise OSError(5, "Input/output error", "fmri.partial.npy")
                emit(row, block)
            return real_rows(x, scales, emit_or_fail, helper)

        monkeypatch.setattr(write, "zscore_rows", failing)
    run = tmp_path / "run"
    with pytest.raises(OSError, match="Input/output error") as err:  # kept, as a notebook keeps its last traceback
        write.write_subject_fmri(subject, run / "stage", run / "work", progress=False)
    assert err.value.errno == 5
    assert not [t.name for t in threading.enumerate() if t.name.startswith("brainnet-")]
    assert not (run / "stage" / subject.name / "fmri.npy").exists()
    done = sorted(p.name for p in (run / "work" / subject.name).glob("session_*.npy"))
    assert done == ["session_01.npy", "session_02.npy"]

    monkeypatch.undo()
    write.write_subject_fmri(subject, run / "stage", run / "work", progress=False)
    for name in ("fmri.npy", "vertex_valid.npy"):
        got = (run / "stage" / subject.name / name).read_bytes()
        assert got == (clean / "stage" / subject.name / name).read_bytes(), name


def test_stage_reads_cold_betas_past_the_cache_to_the_same_bytes(tree, tmp_path, monkeypatch):
    """Betas not in the page cache are read ``O_DIRECT`` (and stay out of it); the stage's output is the
    bytes of a run that read them through the cache."""
    import os

    from brainnet.data.formats import blockread
    from brainnet.data.prep import write
    from brainnet.data.prep.config import PrepareConfig
    from brainnet.data.prep.plan import make_plan

    subject = make_plan(tree.nsd, tree.algonauts, PrepareConfig()).subjects[0]
    files = [f for pair in subject.betas for f in pair]
    if not hasattr(os, "posix_fadvise") or blockread._open_direct(files[0]) is None:
        pytest.skip("no O_DIRECT where the test tree lies")
    cached = tmp_path / "cached"
    write.write_subject_fmri(subject, cached / "stage", cached / "work", progress=False)

    for f in files:  # out of the page cache
        fd = os.open(f, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        still = blockread.range_cached(fd, 0, os.fstat(fd).st_size)
        os.close(fd)
        if still is not False:
            pytest.skip("the page cache cannot be probed or emptied here")
    opened = []
    real_open = blockread._open_direct
    monkeypatch.setattr(blockread, "_open_direct", lambda p: opened.append(p) or real_open(p))
    cold = tmp_path / "cold"
    write.write_subject_fmri(subject, cold / "stage", cold / "work", progress=False)
    assert sorted(map(str, opened)) == sorted(map(str, files))
    for name in ("fmri.npy", "vertex_valid.npy"):
        got = (cold / "stage" / subject.name / name).read_bytes()
        assert got == (cached / "stage" / subject.name / name).read_bytes(), name
