"""Memory replay training driver: image-disjoint design, ridge, planted peak, control at chance."""

from __future__ import annotations

import numpy as np
import pytest

from brainnet.analysis.planted import find_ground_truth, planted_lag_profile, planted_peak_lag
from brainnet.analysis.replay_run import (
    ReplayConfig,
    ReplayFeatures,
    fit_ridge,
    lag_trials,
    replay_features,
    run_replay,
)
from brainnet.analysis.truth import kind_mask, vertex_truth
from tests._mini_cache import mini_tree, prepared_tiny

LAGS = range(0, 13)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepared_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def features(prepared):
    return replay_features(prepared, "brainnet-tiny")


@pytest.fixture(scope="module")
def truth(prepared, tmp_path_factory):
    gt = mini_tree(tmp_path_factory).ground_truth
    return gt, vertex_truth(gt, prepared, "subj01")


@pytest.fixture(scope="module")
def replay(prepared, features, truth, tmp_path_factory):
    _, df = truth
    groups = {"subj01": {k: np.flatnonzero(kind_mask(df, k)) for k in ("memory", "visual")}}
    out = tmp_path_factory.mktemp("replay")
    return run_replay(prepared, ["subj01"], LAGS, features, out, vertex_groups=groups, progress=False)


def _subject_arrays(prepared, subject="subj01"):
    with np.load(prepared / subject / "trials.npz") as t:
        cols = {k: t[k] for k in ("split", "session", "image")}
    return np.load(prepared / subject / "memory_index.npy"), cols


def test_lag_trials_are_image_disjoint_and_control_keeps_the_image_sets(prepared):
    mi, t = _subject_arrays(prepared)
    for lag in (0, 1, 6):
        rows, fit, score = lag_trials(mi, t["split"], t["session"], t["image"], lag)
        assert fit.any() and score.any() and not (fit & score).any()
        assert np.all(rows[fit | score] >= 0) and np.all(rows[~(fit | score)] == -1)
        fit_images = np.unique(t["image"][t["split"] == 0])
        assert not np.isin(rows[score], fit_images).any()  # no scored image was ever fitted
        assert np.array_equal(rows[fit | score], mi[fit | score, lag])
        crow, cfit, cscore = lag_trials(mi, t["split"], t["session"], t["image"], lag, control=True, seed=3)
        assert np.array_equal(cfit, fit) and np.array_equal(cscore, score)
        assert not np.isin(crow[score], fit_images).any()
        for role in (fit, score):
            for s in np.unique(t["session"][role]):
                sel = role & (t["session"] == s)
                assert np.array_equal(np.sort(crow[sel]), np.sort(rows[sel]))  # same images, per session
        assert np.mean(crow[score] != rows[score]) > 0.9  # the link is broken
    with pytest.raises(ValueError, match="seed"):
        lag_trials(mi, t["split"], t["session"], t["image"], 1, control=True)
    with pytest.raises(ValueError, match="shape"):
        lag_trials(mi, t["split"], t["session"][:5], t["image"], 1)


def test_fit_ridge_recovers_a_linear_map_and_penalises_noise_vertices(rng):
    x = rng.standard_normal((400, 20))
    w = rng.standard_normal((20, 3))
    y = np.c_[x @ w + 0.1 * rng.standard_normal((400, 3)), rng.standard_normal((400, 2))]
    fit = fit_ridge(x, y, (1e-2, 1.0, 1e2, 1e5), groups=np.arange(400) // 2, seed=0)
    x_new = rng.standard_normal((200, 20))
    pred = fit.predict(x_new)
    for v in range(3):
        assert np.corrcoef(pred[:, v], x_new @ w[:, v])[0, 1] > 0.99
    assert fit.alpha[:3].max() <= 1.0 and fit.alpha[3:].min() >= 1e2  # signal: small, noise: large penalty
    with pytest.raises(ValueError, match="same n"):
        fit_ridge(x, y[:10], (1.0,), groups=np.arange(400))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="model"):
        ReplayConfig(model="svm")
    with pytest.raises(ValueError, match="overlap"):
        ReplayConfig(fit_splits=("train", "val"), score_splits=("val",))
    with pytest.raises(ValueError, match="unknown keys"):
        ReplayConfig.from_dict({"alpha": 1})
    assert ReplayConfig.from_dict(ReplayConfig(alphas=(2.0,)).to_dict()) == ReplayConfig(alphas=(2.0,))


def test_features_roundtrip(features, tmp_path):
    assert features.vectors.shape[1] == sum(features.widths)
    np.testing.assert_allclose(features.vectors.mean(axis=0), 0, atol=1e-4)
    back = ReplayFeatures.load(features.save(tmp_path / "f.npz"))
    assert np.array_equal(back.vectors, features.vectors) and back.widths == features.widths


def test_planted_peak_recovered_on_memory_vertices(replay, truth):
    gt, _ = truth
    planted = planted_peak_lag(planted_lag_profile(gt), window=(1, max(LAGS)))
    assert planted in (6, 7)
    sr = replay["subj01"]
    est = sr.peak("memory", window=(1, max(LAGS)), n_boot=300, seed=0)
    assert est.found and not est.at_edge
    assert abs(est.peak - planted) <= 1.0
    assert est.peak_ci[0] - 1 <= planted <= est.peak_ci[1] + 1
    prof = sr.group_profile("memory")
    assert prof[planted] > 0.1 and prof[planted] > 3 * abs(prof[3])  # lag 3 sits near a zero of the profile
    # visual vertices: the current image only
    vis = sr.group_profile("visual")
    assert vis[0] > 0.2 and np.all(np.abs(vis[1:]) < 0.05)
    # maps: per-vertex r, the memory vertices carry the peak
    mem = kind_mask(truth[1], "memory")
    assert sr.r[0, planted, mem].mean() > 5 * abs(sr.r[0, planted, ~mem].mean())


def test_control_sits_at_chance(replay):
    sr = replay["subj01"]
    for group in ("memory", "visual", "all"):
        test = sr.chance(group)
        assert test.at_chance, (group, test)
        assert abs(test.mean_r) < 0.01
    assert np.abs(sr.group_profile("memory", control=True)).max() < 0.05
    assert np.array_equal(sr.n_fit[0], sr.n_fit[1]) and np.array_equal(sr.n_score[0], sr.n_score[1])


def test_profile_table_and_rerun_is_cached(replay, prepared, features):
    sr = replay["subj01"]
    with np.load(prepared / "subj01" / "rois.npz") as rois:
        labels, names = rois["streams"], rois["streams__names"]
    table = sr.profile(labels, names)
    assert list(table.index) == list(LAGS) and "all" in table
    assert table.loc[0, "all"] > table.loc[5, "all"]
    assert len(replay.table) == 2 * len(LAGS)


def test_ground_truth_lookup(prepared, tmp_path):
    assert find_ground_truth(prepared) is not None
    with pytest.raises(FileNotFoundError):
        find_ground_truth(tmp_path)


def test_mlp_variant_learns_the_current_image(prepared, features, truth, tmp_path):
    _, df = truth
    groups = {"subj01": {"visual": np.flatnonzero(kind_mask(df, "visual"))}}
    cfg = ReplayConfig(model="mlp", epochs=25, batch_size=64, lr=3e-3, hidden=64, out_dim=16)
    res = run_replay(prepared, ["subj01"], [0], features, tmp_path, config=cfg, vertex_groups=groups, progress=False)
    prof = res["subj01"].group_profile("visual")
    ctrl = res["subj01"].group_profile("visual", control=True)
    assert prof[0] > 0.1 and abs(ctrl[0]) < 0.05


@pytest.mark.slow
def test_ray_grid_matches_the_in_process_run(prepared, features, replay, tmp_path):
    ray = pytest.importorskip("ray")
    try:
        res = run_replay(prepared, ["subj01"], [0, 6], features, tmp_path, use_ray=True, num_cpus=2,
                         progress=False)
    finally:
        ray.shutdown()
    local = replay["subj01"]
    np.testing.assert_allclose(res["subj01"].r, local.r[:, [0, 6]], atol=1e-6)
