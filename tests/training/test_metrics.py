"""Metrics against NumPy / SciPy references and planted cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr

from brainnet.data.noise_ceiling import ncsnr_from_noise_ceiling, noise_ceiling
from brainnet.training.identification import correlation_matrix, identification_accuracy, identification_ranks
from brainnet.training.metrics import (
    PearsonAccumulator,
    challenge_score,
    mean_noise_normalized_score,
    noise_normalized_score,
    pearson_r,
    roi_means,
    summarize,
)


def _correlated(rng, n=50, v=20):
    y = rng.normal(size=(n, v))
    p = 0.5 * y + rng.normal(size=(n, v)) + rng.normal(size=v) * 3
    return p, y


def test_pearson_matches_scipy_numpy_and_torch(rng):
    p, y = _correlated(rng)
    ref = np.array([pearsonr(p[:, j], y[:, j])[0] for j in range(p.shape[1])])
    r_np = pearson_r(p, y)
    assert isinstance(r_np, np.ndarray) and r_np.shape == (20,)
    np.testing.assert_allclose(r_np, ref, atol=1e-10)
    r_t = pearson_r(torch.from_numpy(p).float(), torch.from_numpy(y).float())
    assert isinstance(r_t, torch.Tensor)
    np.testing.assert_allclose(r_t.numpy(), ref, atol=1e-5)


def test_streaming_equals_full_and_merge(rng):
    p, y = _correlated(rng, n=103)
    p = p + 1000.0  # large offset: naive sum formulas would lose precision
    ref = pearson_r(p, y)
    acc = PearsonAccumulator()
    for a, b in [(0, 7), (7, 8), (8, 60), (60, 103)]:
        acc.update(torch.from_numpy(p[a:b]), torch.from_numpy(y[a:b]))
    np.testing.assert_allclose(acc.compute().numpy(), ref, atol=1e-10)
    first, second = PearsonAccumulator(), PearsonAccumulator()
    first.update(p[:40], y[:40])
    second.update(p[40:], y[40:])
    first.merge(second)
    np.testing.assert_allclose(first.compute().numpy(), ref, atol=1e-10)
    acc.reset()
    with pytest.raises(ValueError):
        acc.compute()


def test_pearson_constant_column_and_bad_shapes(rng):
    p, y = _correlated(rng)
    p[:, 3] = 2.0
    r = pearson_r(p, y)
    assert r[3] == 0.0 and np.isfinite(r).all()
    with pytest.raises(ValueError):
        pearson_r(p, y[:, :5])
    acc = PearsonAccumulator()
    acc.update(p, y)
    with pytest.raises(ValueError):
        acc.update(p[:, :5], y[:, :5])


def test_noise_normalized_score_values_cap_and_zero_nc():
    r = np.array([0.5, -0.3, 0.9, 0.2, 0.0, np.nan])
    nc = np.array([0.5, 0.5, 0.1, 0.0, 0.0, 0.4])
    s = noise_normalized_score(r, nc)
    np.testing.assert_allclose(s, [50.0, 0.0, 100.0, 100.0, 0.0, 0.0])
    assert mean_noise_normalized_score(r, nc) == pytest.approx(s.mean())
    assert mean_noise_normalized_score(r, nc, reduce="median") == pytest.approx(np.median(s))
    assert noise_normalized_score([0.9], [0.1], cap=1000.0)[0] == pytest.approx(810.0)
    with pytest.raises(ValueError, match="fraction"):
        noise_normalized_score(r, nc * 100)
    with pytest.raises(ValueError):
        mean_noise_normalized_score(r, nc, reduce="max")


def test_challenge_score_against_a_hand_computation(rng):
    """Images 10 (3 repeats), 20 (2), 30 and 40 (1 each): n3 = 1, n2 = 1, n1 = 2."""
    image = np.array([10, 20, 10, 30, 40, 20, 10])
    p0 = np.array([1.0, 2, 3, 5, 0, 4, 2])  # image means 2, 3, 5, 0
    t0 = np.array([0.0, 3, 3, 2, 1, 5, 0])  # image means 1, 4, 2, 1
    pred = np.stack([p0, -p0, p0], axis=1)  # vertex 1: r < 0; vertex 2: tiny ncsnr
    resp = np.stack([t0, t0, t0], axis=1)
    ncsnr = np.array([0.8, 0.8, 0.1])
    r = np.corrcoef([2.0, 3, 5, 0], [1.0, 4, 2, 1])[0, 1]
    nc = ncsnr**2 / (ncsnr**2 + (1 / 3 + 1 / 2 + 2 / 1) / (1 + 1 + 2))
    want = [100 * r**2 / nc[0], 0.0, 100.0]  # r < 0 counts as 0; 100 r^2 / NC > 100 -> capped
    assert 0 < want[0] < 100 and 100 * r**2 / nc[2] > 100
    ch = challenge_score(pred, resp, image, ncsnr)
    np.testing.assert_allclose(ch.r, [r, -r, r], atol=1e-12)
    np.testing.assert_allclose(ch.nc, nc, rtol=1e-6)
    np.testing.assert_allclose(ch.score, want, rtol=1e-5)
    assert ch.mean == pytest.approx(np.mean(want), rel=1e-5)
    assert ch.repeat_counts == {1: 2, 2: 1, 3: 1} and ch.n_images == 4
    # trial order does not matter; trial-level r differs from the image-averaged one
    perm = rng.permutation(image.size)
    np.testing.assert_allclose(challenge_score(pred[perm], resp[perm], image[perm], ncsnr).score, ch.score)
    assert abs(pearson_r(pred, resp)[0] - r) > 0.05
    with pytest.raises(ValueError, match="ncsnr"):
        challenge_score(pred, resp, image, ncsnr[:2])


def test_noise_ceiling_repeat_counts_and_inverse(rng):
    ncsnr = rng.uniform(0, 2, 50)
    # all images with k repeats: the NC of the mean of k repeats, 1 / (1 + 1 / (k ncsnr^2))
    for k in (1, 3, 4):
        np.testing.assert_allclose(noise_ceiling(ncsnr, np.full(7, k)), 1 / (1 + 1 / (k * ncsnr**2)), rtol=1e-6)
    np.testing.assert_allclose(noise_ceiling(ncsnr, np.array([4, 4, 2])), ncsnr**2 / (ncsnr**2 + (2 / 4 + 1 / 2) / 3),
                               rtol=1e-6)
    nc3 = noise_ceiling(ncsnr)  # the stored NC (3 repeats)
    np.testing.assert_allclose(ncsnr_from_noise_ceiling(nc3), ncsnr, rtol=1e-3, atol=1e-4)
    assert ncsnr_from_noise_ceiling(np.array([0.0]))[0] == 0.0
    with pytest.raises(ValueError, match="n_repeats"):
        noise_ceiling(ncsnr, np.array([3, 0]))


def test_summarize_and_roi_means():
    r = np.array([0.1, 0.2, 0.3, 0.4, 0.5, np.nan])
    labels = np.array([0, 1, 1, 2, 2, 2], dtype=np.int16)
    names = np.array(["Unknown", "V1", "V2"])
    out = roi_means(r, labels, names)
    assert list(out) == ["V1", "V2"]
    assert out["V1"] == pytest.approx(0.25) and out["V2"] == pytest.approx(0.45)
    assert roi_means(r, labels, names, skip_unknown=False)["Unknown"] == pytest.approx(0.1)
    with pytest.raises(ValueError):
        roi_means(r, np.array([0, 1, 1, 2, 2, 3]), names)
    summ = summarize(r, nc=np.full(6, 0.25))
    assert summ["mean_r"] == pytest.approx(1.5 / 6)
    assert summ["mean_score"] == pytest.approx(100 * np.mean(np.array([.1, .2, .3, .4, .5, 0]) ** 2 / .25))


def test_correlation_matrix_matches_numpy(rng):
    a, b = rng.normal(size=(5, 30)), rng.normal(size=(4, 30))
    ref = np.corrcoef(np.vstack([a, b]))[:5, 5:]
    np.testing.assert_allclose(correlation_matrix(a, b), ref, atol=1e-12)


def test_identification_perfect_noise_and_planted(rng):
    measured = rng.normal(size=(120, 300))
    assert identification_accuracy(measured, measured, n_candidates=50) == 1.0
    assert (identification_ranks(measured, measured) == 0).all()
    noise = rng.normal(size=measured.shape)
    acc = identification_accuracy(noise, measured, n_candidates=10, n_draws=30)
    assert abs(acc - 0.1) < 0.03
    assert identification_ranks(noise, measured).mean() == pytest.approx(59.5, abs=12)
    # a noisy but informative prediction: between chance and perfect, harder with more candidates
    pred = measured + 4.0 * rng.normal(size=measured.shape)
    acc2 = identification_accuracy(pred, measured, n_candidates=2)
    acc50 = identification_accuracy(pred, measured, n_candidates=50)
    assert 0.5 < acc2 <= 1.0 and 0.02 < acc50 < acc2
    with pytest.raises(ValueError):
        identification_accuracy(pred, measured, n_candidates=121)
    with pytest.raises(ValueError):
        identification_accuracy(pred[:5], measured, n_candidates=2)
