"""Memory replay grid: image-disjoint design, himalaya ridge, Lightning MLP, planted peak, control
at chance, the notebook's tables and figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainnet.analysis.planted import find_ground_truth, planted_lag_profile, planted_peak_lag
from brainnet.analysis.replay_design import lag_trials
from brainnet.analysis.replay_results import (
    chance_table,
    group_profiles,
    peak_estimates,
    peak_table,
    planted_comparison,
    replay_key_numbers,
    vertex_groups,
)
from brainnet.analysis.truth import kind_mask, vertex_truth
from brainnet.data import PreparedDataset
from brainnet.training.replay_fit import ReplayConfig, ReplayFeatures, fit_ridge, inner_folds
from brainnet.training.replay_grid import run_replay
from brainnet.training.replay_mlp import fit_mlp

from tests._mini_cache import mini_tree, prepared_tiny, tiny_replay_features

LAGS = range(0, 13)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepared_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return tiny_replay_features(tmp_path_factory)


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
    subj = PreparedDataset(prepared).subject(subject)
    return subj.memory_index, {k: subj.trials[k] for k in ("split", "session", "image")}


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
    y = np.c_[x @ w + 0.1 * rng.standard_normal((400, 3)), rng.standard_normal((400, 2))] + 5.0
    fit = fit_ridge(x, y, (1e-2, 1.0, 1e2, 1e5), groups=np.arange(400) // 2, seed=0)
    x_new = rng.standard_normal((200, 20))
    pred = np.asarray(fit.predict(x_new))
    for v in range(3):
        assert np.corrcoef(pred[:, v], x_new @ w[:, v])[0, 1] > 0.99
    np.testing.assert_allclose(pred[:, :3], x_new @ w + 5.0, atol=0.1)  # with the intercept
    alpha = np.asarray(fit.best_alphas_)
    assert alpha[:3].max() <= 1.0 and alpha[3:].min() >= 1e2  # signal: small, noise: large penalty
    with pytest.raises(ValueError, match="same n"):
        fit_ridge(x, y[:10], (1.0,), groups=np.arange(400))
    with pytest.raises(ValueError, match="distinct fit images"):
        fit_ridge(x, y, (1.0,), groups=np.arange(400) % 3)


def test_inner_folds_keep_the_repeats_of_an_image_together(rng):
    groups = rng.integers(0, 60, size=300)
    folds = inner_folds(groups, 5, seed=1)
    assert len(folds) == 5
    held = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(held), np.arange(300))  # every row held out exactly once
    for train, test in folds:
        assert not np.isin(groups[test], groups[train]).any()
    again = inner_folds(groups, 5, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="model"):
        ReplayConfig(model="svm")
    with pytest.raises(ValueError, match="overlap"):
        ReplayConfig(fit_splits=("train", "val"), score_splits=("val",))
    with pytest.raises(ValueError, match="inner_folds"):
        ReplayConfig(inner_folds=1)
    with pytest.raises(ValueError, match="unknown config keys"):
        ReplayConfig.from_dict({"alpha": 1})
    assert ReplayConfig.from_dict(ReplayConfig(alphas=(2.0,)).to_dict()) == ReplayConfig(alphas=(2.0,))


def test_features_roundtrip(features, tmp_path):
    assert features.vectors.shape[1] == sum(features.widths)
    np.testing.assert_allclose(features.vectors.mean(axis=0), 0, atol=1e-4)
    back = ReplayFeatures.load(features.save(tmp_path / "f.npz"))
    assert np.array_equal(back.vectors, features.vectors) and back.widths == features.widths
    assert back.weights == features.weights and features.weights.startswith(("shipped:", "random:"))


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


def test_profile_table_and_rerun_is_cached(replay, prepared, features, truth, tmp_path):
    sr = replay["subj01"]
    labels, names = PreparedDataset(prepared).subject("subj01").roi_labels("streams")
    table = sr.profile(labels, names)
    assert list(table.index) == list(LAGS) and "all" in table
    assert table.loc[0, "all"] > table.loc[5, "all"]
    assert len(replay.table) == 2 * len(LAGS)
    np.testing.assert_array_equal(sr.lag_map(6), sr.r[0, 6])
    with pytest.raises(KeyError, match="lag 40"):
        sr.lag_map(40)


def test_notebook_tables_and_key_numbers(replay, prepared, truth):
    gt, df = truth
    dataset = PreparedDataset(prepared)
    groups = vertex_groups(dataset, "subj01", gt)
    assert "planted memory" in groups and "planted visual" in groups
    np.testing.assert_array_equal(groups["planted memory"], np.flatnonzero(kind_mask(df, "memory")))
    labels, names = dataset.subject("subj01").roi_labels("streams")
    first = names[int(np.unique(labels[labels > 0])[0])]
    np.testing.assert_array_equal(groups[first], np.flatnonzero(labels == names.index(first)))
    groups = {"subj01": {"memory": groups["planted memory"], "visual": groups["planted visual"]}}
    table = group_profiles(replay, groups)
    assert list(table.columns) == ["subj01 all", "subj01 memory", "subj01 visual"]
    np.testing.assert_allclose(table["subj01 memory"], replay["subj01"].group_profile("memory"))
    window = (1, max(LAGS))
    peaks = peak_estimates(replay, groups, window=window, n_boot=200, seed=0)
    assert peaks["subj01"][0] == "memory"  # the largest mean r over lags >= 2
    chance = chance_table(replay, groups)
    assert list(chance["group"]) == ["all", "memory", "visual"] and chance["at chance"].all()
    key = replay_key_numbers(peaks, chance)["subj01"]
    assert key["peak"] == peaks["subj01"][1].peak and key["control_at_chance"] == {
        "all": True, "memory": True, "visual": True}
    assert len(peak_table(peaks)) == 1
    cmp = planted_comparison(replay["subj01"], planted_lag_profile(gt), window, group="memory")
    assert cmp["planted_peak_lag"] in (6, 7) and cmp["planted_profile_vs_recovered_r"] > 0.5


def test_replay_figures(replay, prepared, truth):
    from brainnet.plotting.replay import (
        plot_lag_profiles,
        plot_peak_bootstrap,
        plot_planted_vs_recovered,
        plot_replay_maps,
    )

    gt, _ = truth
    groups = {"subj01": ["memory", "visual"]}
    fig = plot_lag_profiles(replay, groups, focus="memory")
    assert len(fig.axes[0].lines) == 2 + 2 * 2 + 1  # all, two groups (real + control), zero line
    window = (1, max(LAGS))
    peaks = peak_estimates(replay, groups, window=window, n_boot=100, seed=0)
    assert len(plot_peak_bootstrap(peaks, window).axes) == 1
    sr = replay["subj01"]
    fig = plot_replay_maps(sr, PreparedDataset(prepared), [0, 6, 99], peak_lag=6, view="flat")
    assert sum(ax.get_title() != "" for ax in fig.axes) >= 3  # lag 0, lag 6, control at 6 (99 not run)
    with pytest.raises(ValueError, match="none of the lags"):
        plot_replay_maps(sr, PreparedDataset(prepared), [99])
    fig = plot_planted_vs_recovered(sr, planted_lag_profile(gt), 6, peaks["subj01"][1].peak, group="memory")
    assert "planted peak 6" in fig.axes[0].get_title()


def test_ground_truth_lookup(prepared, tmp_path):
    assert find_ground_truth(prepared) is not None
    with pytest.raises(FileNotFoundError):
        find_ground_truth(tmp_path)


def test_mlp_variant_learns_the_current_image(prepared, features, truth, tmp_path):
    _, df = truth
    groups = {"subj01": {"visual": np.flatnonzero(kind_mask(df, "visual"))}}
    cfg = ReplayConfig(model="mlp", epochs=25, batch_size=64, lr=3e-3, hidden=64, out_dim=16)
    before = torch.random.get_rng_state()
    res = run_replay(prepared, ["subj01"], [0], features, tmp_path, config=cfg, vertex_groups=groups, progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)  # the fits never reseed the global RNG
    prof = res["subj01"].group_profile("visual")
    ctrl = res["subj01"].group_profile("visual", control=True)
    assert prof[0] > 0.1 and abs(ctrl[0]) < 0.05


def test_mlp_fit_is_reproducible_from_its_seed(features, rng):
    rows = rng.integers(0, len(features.vectors), size=120)
    y = rng.standard_normal((120, 5)).astype(np.float32)
    cfg = ReplayConfig(model="mlp", epochs=2, batch_size=32, hidden=8, out_dim=4)
    a = fit_mlp(features, rows, y, rows[:10], cfg, seed=4, subject="subj01")
    torch.rand(3)  # moving the global RNG changes nothing
    b = fit_mlp(features, rows, y, rows[:10], cfg, seed=4, subject="subj01")
    assert a.shape == (10, 5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, fit_mlp(features, rows, y, rows[:10], cfg, seed=5, subject="subj01"))


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
