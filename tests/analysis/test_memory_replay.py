"""Memory replay maths on planted data: lag design, peak + CI, period, shuffled control at chance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from brainnet.analysis.memory_replay import (
    control_at_chance,
    group_sums,
    lag_products,
    lag_profile,
    per_trial_products,
)
from brainnet.analysis.replay_design import lag_design
from brainnet.analysis.replay_peak import estimate_peak, peak_of, period_of

N_SLOTS = 33


@dataclass
class Planted:
    memory_index: np.ndarray  # (n_trials, 33)
    features: np.ndarray  # (n_images, D)
    responses: np.ndarray  # (n_trials, V)
    image: np.ndarray  # (n_trials,) current image
    test: np.ndarray  # (n_trials,) bool, image-disjoint test split


def planted_profile(lags: np.ndarray, peak: float = 6.0, period: float = 6.0) -> np.ndarray:
    """Non-negative periodic lag profile under a Gaussian envelope, maximal at ``peak``."""
    envelope = np.exp(-((lags - peak) ** 2) / (2 * 6.0**2))
    return envelope * 0.5 * (1 + np.cos(2 * np.pi * (lags - peak) / period))


def make_planted(rng, coef: np.ndarray, n_runs=50, slots=75, n_images=1500, d=6, v=24,
                 noise=1.0) -> Planted:
    """Runs of images (12 % blank slots); response = sum_k coef[k] * x(image k slots back) @ U."""
    features = rng.normal(size=(n_images, d))
    maps = rng.normal(size=(d, v)) / np.sqrt(d)
    rows, resp, cur = [], [], []
    for _ in range(n_runs):
        shown = rng.integers(0, n_images, size=slots)
        shown[rng.random(slots) < 0.12] = -1
        padded = np.concatenate([np.full(N_SLOTS - 1, -1), shown])
        for s in np.flatnonzero(shown >= 0):
            mi = padded[s : s + N_SLOTS][::-1]  # mi[k] = image shown k slots before slot s
            rows.append(mi)
            x = np.where(mi[:, None] >= 0, features[np.maximum(mi, 0)], 0.0)  # (33, d)
            resp.append((coef[:, None] * x).sum(axis=0) @ maps)
            cur.append(mi[0])
    memory_index = np.asarray(rows, dtype=np.int32)
    responses = np.asarray(resp) + noise * rng.normal(size=(len(resp), v))
    image = np.asarray(cur)
    test_images = rng.permutation(n_images)[: n_images // 4]
    return Planted(memory_index, features, responses, image, np.isin(image, test_images))


def fit_lag_models(data: Planted, shuffle: bool, seed: int = 1):
    """Least squares per lag on the train trials -> (predictions per lag, test masks)."""
    preds, masks = [], []
    for k in range(N_SLOTS):
        rows, mask = lag_design(data.memory_index, k, shuffle=shuffle, rng=seed + k,
                                within=data.test)
        x = np.column_stack([data.features[np.maximum(rows, 0)], np.ones(len(rows))])
        train = mask & ~data.test
        w = np.linalg.lstsq(x[train], data.responses[train], rcond=None)[0]
        test = mask & data.test
        preds.append(x[test] @ w)
        masks.append(test[data.test])
    return preds, np.asarray(masks)


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    lags = np.arange(N_SLOTS, dtype=float)
    coef = 0.6 * planted_profile(lags)
    data = make_planted(rng, coef)
    preds, masks = fit_lag_models(data, shuffle=False)
    products = lag_products(preds, data.responses[data.test], masks)
    return data, products, preds[6], masks[6]


def test_memory_index_of_synthetic_runs_is_consistent(planted):
    data = planted[0]
    mi = data.memory_index
    # the lag-1 image of a trial is the current image of the previous non-blank slot
    assert mi.shape[1] == N_SLOTS
    assert np.all(mi[1:, 1][mi[1:, 1] >= 0] == mi[:-1, 0][mi[1:, 1] >= 0])


def test_lag_design_mask_and_shuffle(planted, rng):
    data = planted[0]
    rows, mask = lag_design(data.memory_index, 6)
    np.testing.assert_array_equal(mask, data.memory_index[:, 6] >= 0)
    np.testing.assert_array_equal(rows[mask], data.memory_index[mask, 6])
    assert np.all(rows[~mask] == -1) and 0 < mask.sum() < len(mask)

    srows, smask = lag_design(data.memory_index, 6, shuffle=True, rng=3, within=data.test)
    np.testing.assert_array_equal(smask, mask)  # same trial set
    for part in (data.test, ~data.test):  # same images within each split, reassigned
        np.testing.assert_array_equal(np.sort(srows[mask & part]), np.sort(rows[mask & part]))
    assert np.mean(srows[mask] == rows[mask]) < 0.01
    again, _ = lag_design(data.memory_index, 6, shuffle=True, rng=3, within=data.test)
    np.testing.assert_array_equal(again, srows)

    with pytest.raises(ValueError, match="rng"):
        lag_design(data.memory_index, 6, shuffle=True)
    with pytest.raises(ValueError, match="lag must be in"):
        lag_design(data.memory_index, 33)
    with pytest.raises(ValueError, match="integer"):
        lag_design(data.memory_index.astype(float), 1)


def test_per_trial_products_mean_is_mean_pearson_r(rng):
    pred = rng.normal(size=(50, 7))
    obs = pred + rng.normal(size=(50, 7))
    obs[:, 3] = 2.0  # constant vertex -> r counted as 0
    r = [0.0 if obs[:, v].std() == 0 else np.corrcoef(pred[:, v], obs[:, v])[0, 1]
         for v in range(7)]
    assert per_trial_products(pred, obs).mean() == pytest.approx(np.mean(r), abs=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        per_trial_products(pred, obs[:, :3])


def test_group_sums_pool_finite_products_per_image():
    products = np.array([[1.0, 2.0, np.nan, 4.0], [np.nan, 1.0, 1.0, 1.0]])
    sums, counts = group_sums(products, groups=np.array([7, 3, 7, 3]))  # groups in sorted order: 3, 7
    np.testing.assert_array_equal(sums, [[6.0, 1.0], [2.0, 1.0]])
    np.testing.assert_array_equal(counts, [[2, 1], [2, 1]])
    sums, counts = group_sums(products, None)  # each trial alone
    np.testing.assert_array_equal(counts, np.isfinite(products))
    with pytest.raises(ValueError, match="groups must have shape"):
        group_sums(products, np.zeros(3))


def test_lag_profile_per_roi(rng):
    r = rng.normal(size=(4, 6))
    labels = np.array([0, 1, 1, 2, 2, 2])
    table = lag_profile(r, labels, names=["Unknown", "V1", "hippocampus"])
    assert list(table.columns) == ["all", "V1", "hippocampus"]
    np.testing.assert_allclose(table["V1"], r[:, 1:3].mean(axis=1))
    np.testing.assert_allclose(table["all"], r.mean(axis=1))
    assert list(table.index) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="labels"):
        lag_profile(r, labels[:3])


def test_peak_and_period_recovered_on_planted_profile(planted):
    data, products = planted[:2]
    est = estimate_peak(products, groups=data.image[data.test], n_boot=500, rng=0)
    print(f"\npeak {est.peak:.2f} CI {est.peak_ci}, support {est.support:.2f}; "
          f"period {est.period:.2f} CI {est.period_ci} ACF {est.period_acf:.2f} "
          f"p {est.period_p:.4f} found {est.period_found:.2f}")
    assert est.found and not est.at_edge
    assert est.peak_ci[0] <= 6.0 <= est.peak_ci[1]
    assert abs(est.peak - 6.0) < 0.75
    assert 0 < est.peak_ci[1] - est.peak_ci[0] < 3.0
    # (CI coverage of the period is checked over many data sets in the slow test below)
    assert abs(est.period - 6.0) < 0.25 and est.period_ci[1] - est.period_ci[0] < 1.0
    assert est.period_found > 0.9 and est.period_p < 0.01
    # the profile follows the planted shape
    truth = planted_profile(np.arange(N_SLOTS, dtype=float))
    assert np.corrcoef(est.profile, truth)[0, 1] > 0.95


def test_window_excludes_dominant_early_lags(planted):
    data, products = planted[:2]
    est = estimate_peak(products, groups=data.image[data.test], n_boot=200, rng=0,
                        window=(8, 32))
    assert est.lags[0] == 8 and len(est.profile) == 25
    fine = np.linspace(8, 32, 24001)
    truth = fine[np.argmax(planted_profile(fine))]  # next bump, pulled below 12 by the envelope
    assert 11.0 < truth < 12.0
    assert est.found and est.peak_ci[0] <= truth <= est.peak_ci[1]


def test_noise_profile_has_no_peak(rng):
    data = make_planted(rng, np.zeros(N_SLOTS), n_runs=30)
    preds, masks = fit_lag_models(data, shuffle=False)
    products = lag_products(preds, data.responses[data.test], masks)
    est = estimate_peak(products, groups=data.image[data.test], n_boot=500, rng=0)
    print(f"\nnoise: peak {est.peak:.2f} CI {est.peak_ci} support {est.support:.2f} "
          f"period p {est.period_p:.3f} found {est.period_found:.2f}")
    assert not est.found
    assert est.period_p > 0.01 and est.period_found < 0.5
    assert est.peak_ci[1] - est.peak_ci[0] > 4.0 or est.support < 0.5


def test_point_estimators_on_exact_profiles():
    lags = np.arange(33, dtype=float)
    assert peak_of(-((lags - 6.3) ** 2)) == pytest.approx(6.3, abs=1e-9)
    assert peak_of(-lags) == 0.0  # edge: no refinement
    for period in (4.5, 5.5, 8.0, 13.0):
        wave = np.cos(2 * np.pi * lags / period + 1.0) + 0.02 * lags
        est, height = period_of(wave)
        assert est == pytest.approx(period, abs=0.1) and height > 0.5
    assert period_of(planted_profile(lags))[0] == pytest.approx(6.0, abs=0.05)
    assert np.isnan(period_of(0.01 * lags**2, detrend=2)[0])  # a pure trend has no period


def test_shuffled_control_at_chance(planted):
    data, products, pred6, mask6 = planted
    preds, masks = fit_lag_models(data, shuffle=True)
    obs = data.responses[data.test]
    control = lag_products(preds, obs, masks)
    groups = data.image[data.test]
    clustered = control_at_chance(products=control, groups=groups)
    print(f"\ncontrol: mean r {clustered.mean_r:.4f} p {clustered.p_value:.3f}")
    assert clustered.at_chance and clustered.p_value > 0.01
    assert clustered.ci[0] < 0 < clustered.ci[1]
    r_control = np.stack([
        [np.corrcoef(p[:, v], obs[m][:, v])[0, 1] for v in range(obs.shape[1])]
        for p, m in zip(preds[5:8], masks[5:8])
    ])
    fisher = control_at_chance(r_control, n_test=int(masks[5:8].sum(axis=1).min()))
    assert fisher.method == "fisher-z" and fisher.p_value > 0.01
    # the real lag-6 model is far from chance, by either method
    assert control_at_chance(products=products[6], groups=groups).p_value < 1e-6
    real_r = np.array([np.corrcoef(pred6[:, v], obs[mask6][:, v])[0, 1]
                       for v in range(obs.shape[1])])
    assert not control_at_chance(real_r, n_test=int(mask6.sum())).at_chance
    with pytest.raises(ValueError, match="either"):
        control_at_chance()
    with pytest.raises(ValueError, match="n_test"):
        control_at_chance(real_r)


@pytest.mark.slow
def test_peak_ci_coverage_over_datasets():
    """Calibration: over independent planted data sets the 95 % CI holds the true peak."""
    lags = np.arange(N_SLOTS, dtype=float)
    hits, periods = [], []
    for seed in range(12):
        data = make_planted(np.random.default_rng(100 + seed), 0.6 * planted_profile(lags))
        preds, masks = fit_lag_models(data, shuffle=False)
        products = lag_products(preds, data.responses[data.test], masks)
        est = estimate_peak(products, groups=data.image[data.test], n_boot=300, rng=seed)
        hits.append(est.peak_ci[0] <= 6.0 <= est.peak_ci[1])
        periods.append(est.period_ci[0] <= 6.0 <= est.period_ci[1])
    print(f"\ncoverage: peak {np.mean(hits):.2f} period {np.mean(periods):.2f}")
    assert np.mean(hits) >= 0.8 and np.mean(periods) >= 0.75
