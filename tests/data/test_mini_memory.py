"""nsd-mini's generator in bounded memory: its per-subject accumulators live in scratch files, give the
same values as the dense in-memory sums they replace, and its memory does not grow with the sessions."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy import sparse

from brainnet.data.mini import scratch
from brainnet.data.mini.config import TRIALS_PER_SESSION, MiniNSDConfig
from brainnet.data.mini.cortex import plant_cortex
from brainnet.data.mini.response import ImageMeans, RepeatSums, ncsnr_from_repeats
from brainnet.data.mini.surface import SubjectTrials, write_hemisphere


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 64 KiB, so that the small arrays of these tests span several blocks."""
    monkeypatch.setattr(scratch, "BLOCK_BYTES", 64 << 10)


def _sessions(rng, n_units, n_sessions, n_trials):
    """Random z-scored sessions (float32 [n_units, n_trials], a few NaN units) and per trial the image
    row (-1 for some): every image is shown 3 times, some twice within one session."""
    n_img = n_sessions * n_trials // 3
    rows = rng.permutation(np.repeat(np.arange(n_img), 3)).reshape(n_sessions, n_trials)
    z = rng.standard_normal((n_sessions, n_units, n_trials), dtype=np.float32)
    z[:, :3] = np.nan
    return z, rows, n_img


@pytest.mark.parametrize("in_file", [True, False])
def test_accumulators_equal_the_dense_sums(tmp_path, small_blocks, in_file):
    rng = np.random.default_rng(0)
    n_units, n_sessions, T = 300, 4, 90
    z, rows, n_img = _sessions(rng, n_units, n_sessions, T)
    rep3 = np.where(rows % 7 == 3, -1, rows)  # some trials are not 3-repeat images
    sums = RepeatSums(n_img, n_units, tmp_path / "sx.f32" if in_file else None)
    means = ImageMeans(n_img, n_units, tmp_path / "tr.f64" if in_file else None)
    # the dense computation they replace: [images x units] sums updated by a 0/1 matrix per session
    sum_x, sum_x2 = np.zeros((n_img, n_units), np.float32), np.zeros(n_units)
    tr_sum, tr_cnt = np.zeros((n_img, n_units)), np.zeros(n_img, np.int64)
    for se in range(n_sessions):
        sums.add(z[se], rep3[se])
        means.add(z[se], rows[se])
        m = rep3[se] >= 0
        S = sparse.csr_matrix((np.ones(m.sum(), np.float32), (rep3[se][m], np.flatnonzero(m))), shape=(n_img, T))
        sum_x += np.asarray(S @ z[se].T)
        sum_x2 += (z[se][:, m].astype(np.float64) ** 2).sum(axis=1)
        S = sparse.csr_matrix((np.ones(T), (rows[se], np.arange(T))), shape=(n_img, T))
        tr_sum += np.asarray(S @ z[se].T.astype(np.float64))
        tr_cnt += np.bincount(rows[se], minlength=n_img)
    expected = ncsnr_from_repeats((sum_x.astype(np.float64) ** 2).sum(axis=0), sum_x2, n_img)
    got = sums.ncsnr()
    assert got.tobytes() == expected.tobytes()  # bit for bit, NaN units included
    assert np.isfinite(got[3:]).all() and np.isnan(got[:3]).all()
    blocks = list(means.mean_blocks())
    assert len(blocks) > 1
    assert np.concatenate(blocks).tobytes() == (tr_sum / tr_cnt[:, None]).astype(np.float32).tobytes()
    assert not any(tmp_path.iterdir())  # the scratch files are gone once read out


def _hemisphere_peak(out, cx, n_vertices, n_sessions) -> int:
    """Peak traced memory (bytes) of write_hemisphere for a random subject with ``n_sessions`` sessions."""
    cfg = MiniNSDConfig.preset("tiny", n_subjects=1, n_sessions=n_sessions, n_held_out_sessions=1, mesh="fsaverage3",
                               beta_versions=("betas_fithrf_GLMdenoise_RR",))
    rng = np.random.default_rng(n_sessions)
    n_img = n_sessions * TRIALS_PER_SESSION // 3
    ids = rng.permutation(np.repeat(np.arange(n_img), 3))
    trials = SubjectTrials.build(ids, rng.standard_normal(len(ids)), rng.standard_normal(len(ids)), n_sessions,
                                 n_sessions - 1)
    energy, cats = rng.random((n_img, 8, 8), dtype=np.float32), rng.random((n_img, 4, 8, 8), dtype=np.float32)
    (out / "scratch").mkdir(parents=True)
    tracemalloc.start()
    try:
        write_hemisphere(cfg, 0, 0, "lh", cx, n_vertices, energy, cats, trials, 1.0, out / "betas", out / "fmri.npy",
                         out / "scratch", lambda *keys: np.random.default_rng([0, *keys]), lambda it, **kw: it)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (out / "betas" / cfg.beta_versions[0] / f"lh.betas_session{n_sessions:02d}.mgh").is_file()
    assert np.load(out / "fmri.npy").shape == (trials.n_train, int(cx.challenge.sum()) - 1)
    return peak


def test_hemisphere_memory_does_not_grow_with_sessions(tmp_path, monkeypatch):
    """Three times the sessions (and images): the same peak memory. With the [images x vertices] sums in
    memory the peak grows by ~70% here (and by ~12 GB at the algonauts preset)."""
    monkeypatch.setattr(scratch, "BLOCK_BYTES", 256 << 10)
    V = 642  # fsaverage3's vertex count, on random points of the sphere
    cx = plant_cortex(np.random.default_rng(1).standard_normal((V, 3)), "lh", 0.3, np.random.default_rng(1))
    _hemisphere_peak(tmp_path / "warm-up", cx, V, 2)  # first calls allocate once (imports, caches)
    few, many = (_hemisphere_peak(tmp_path / f"s{n}", cx, V, n) for n in (2, 6))
    session_bytes = V * TRIALS_PER_SESSION * 4
    assert many < 1.1 * few, (few, many)
    assert many < 6 * session_bytes, (many, session_bytes)
