"""Brain to network: maps from a FactorTopy, channel map on planted clusters, hierarchy correlation and
profile, token standardisation, the notebook-scale TrainConfig trained by fit_encoder, network figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from brainnet.analysis.brain_to_network import (
    NetworkMaps,
    channel_labels,
    expected_layer,
    hierarchy_correlation,
    hierarchy_profile,
    network_maps,
    planted_checks,
    run_summary,
    trained_clearer,
)
from brainnet.analysis.truth import vertex_truth
from brainnet.backbones import create_backbone
from brainnet.data import PreparedDataset
from brainnet.models import FactorTopy, FactorTopyConfig
from brainnet.plotting import plot_channel_map
from brainnet.plotting.network import plot_backbones_side_by_side, plot_layer_vs_hierarchy, plot_top_channels
from brainnet.training.b2n_config import B2NConfig
from brainnet.training.batches import FeatureSet, subject_vertices
from brainnet.training.config import TrainConfig
from brainnet.training.fit import fit_encoder
from brainnet.training.metrics import pearson_r
from brainnet.training.network import image_tokens, network_features, standardize_tokens

from tests._mini_cache import mini_tree, prepared_tiny

WIDTHS = (6, 8, 10)
NAMES = ("a", "b", "c")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepared_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def truth(prepared, tmp_path_factory):
    return vertex_truth(mini_tree(tmp_path_factory).ground_truth, prepared, "subj01")


def _model(prepared, bottleneck=8):
    coords, hemi = subject_vertices(prepared, ["subj01"])
    cfg = FactorTopyConfig(in_channels=WIDTHS, layer_names=NAMES, bottleneck=bottleneck, mlp_hidden=16, n_freqs=4,
                           chunk_size=None)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the session's RNG
        torch.manual_seed(0)
        return FactorTopy(cfg, coords, hemi).eval()


def test_network_maps_read_the_selectors(prepared):
    model = _model(prepared)
    maps = network_maps(model, "subj01")
    v = model.n_vertices("subj01")
    assert maps.layer_weights.shape == (v, 3) and maps.xy.shape == (v, 2) and maps.scale.shape == (v,)
    assert maps.layer_names == NAMES
    np.testing.assert_allclose(maps.layer_weights.sum(axis=1), 1, atol=1e-5)
    # zero-initialised selector heads: uniform layers, centre of the image, half local / half global
    np.testing.assert_allclose(maps.expected_layer, 1.0, atol=1e-5)
    np.testing.assert_allclose(maps.xy, 0, atol=1e-6)
    np.testing.assert_allclose(maps.scale, 0.5, atol=1e-6)
    assert np.array_equal(maps.readout, model.readouts["subj01"].weight.detach().numpy())
    # selector heads moved away from init: the maps are what the model's own selectors say
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for selector in (model.layer_selector, model.retina, model.scale_selector):
            head = [m for m in selector.modules() if isinstance(m, torch.nn.Linear)][-1]
            head.weight.normal_(0, 1.0, generator=gen)
    moved = network_maps(model, "subj01")
    np.testing.assert_allclose(moved.layer_weights, model.layer_weights("subj01").numpy(), atol=1e-6)
    np.testing.assert_allclose(moved.xy, model.positions("subj01").numpy(), atol=1e-6)
    np.testing.assert_allclose(moved.scale, model.scale("subj01").numpy(), atol=1e-6)
    assert moved.expected_layer.std() > 0.01 and np.abs(moved.xy).max() > 0.01
    np.testing.assert_array_equal(moved.preferred_layer, np.argmax(moved.layer_weights, axis=1))
    with pytest.raises(KeyError):
        network_maps(model, "subj09")
    with pytest.raises(TypeError):
        network_maps(torch.nn.Linear(2, 2), "subj01")


def test_expected_layer_and_hierarchy_correlation(rng):
    w = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0, 0.5]])
    np.testing.assert_allclose(expected_layer(w), [0, 1, 2, 1])
    h = rng.uniform(0, 1, 300)
    logits = np.stack([-(h - c) ** 2 / 0.02 for c in (0.0, 0.5, 1.0)], axis=1)
    weights = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    res = hierarchy_correlation(weights, h)
    assert res.rho > 0.99 and res.n == 300 and res.p_value < 1e-10
    assert hierarchy_correlation(weights[:, ::-1], h).rho < -0.99
    noisy = hierarchy_correlation(rng.dirichlet(np.ones(3), 300), h)
    assert abs(noisy.rho) < 0.2
    assert hierarchy_correlation(weights, h, mask=h < 0.5).n == int((h < 0.5).sum())
    with pytest.raises(ValueError, match="at least 3"):
        hierarchy_correlation(weights, h, mask=np.arange(300) < 2)
    with pytest.raises(ValueError, match="constant"):
        hierarchy_correlation(np.full((300, 3), 1 / 3), h)
    with pytest.raises(ValueError, match="shape"):
        hierarchy_correlation(weights, h[:10])


def test_channel_map_recovers_planted_clusters_end_to_end(prepared, truth, tmp_path, rng):
    """Plant 4 readout directions on 4 cortical regions, read them back through the model."""
    model = _model(prepared, bottleneck=16)
    region = np.where(truth["kind"].to_numpy() != 1, 0, 1 + np.digitize(truth["hierarchy"].to_numpy(), [0.3, 0.6]))
    directions = rng.standard_normal((4, 16))
    with torch.no_grad():
        w = directions[region] + 0.15 * rng.standard_normal((len(region), 16))
        scale = rng.uniform(0.2, 3.0, (len(region), 1))  # channels are directions: scale must not matter
        model.readouts["subj01"].weight.copy_(torch.from_numpy(w * scale).float())
    maps = network_maps(model, "subj01")
    labels = channel_labels(maps, n_clusters=4, n_kmeans=40, seed=0)
    assert labels.shape == region.shape and set(np.unique(labels)) == {0, 1, 2, 3}
    assert adjusted_rand_score(region, labels) > 0.95
    assert np.array_equal(labels, channel_labels(maps, n_clusters=4, n_kmeans=40, seed=0))  # deterministic
    masked = channel_labels(maps, n_clusters=3, n_kmeans=30, seed=0, mask=region > 0)
    assert np.all(masked[region == 0] == -1) and adjusted_rand_score(region[region > 0], masked[region > 0]) > 0.95
    vert = PreparedDataset(prepared).subject("subj01").vertices
    out = tmp_path / "channels.png"
    plot_channel_map(labels, vert["hemi"], vert["index"], mesh=prepared, view="occipital", output_file=out)
    assert out.stat().st_size > 10_000


def test_standardize_tokens(rng):
    local = {k: (5 + 3 * rng.standard_normal((20, c, 4, 4))).astype(np.float16) for k, c in zip(NAMES, WIDTHS)}
    glob = {k: (0.01 * rng.standard_normal((20, c))).astype(np.float16) for k, c in zip(NAMES, WIDTHS)}
    fs = FeatureSet(local=local, global_=glob, memory=torch.zeros(20, 2), backbone="x")
    new, stats = standardize_tokens(fs)
    for k in NAMES:
        x = new.local[k].astype(np.float32)
        np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=2e-3)
        np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1, atol=2e-3)
        np.testing.assert_allclose(new.global_[k].astype(np.float32).std(axis=0), 1, atol=2e-3)
    again_l, again_g = stats.apply({k: torch.from_numpy(v.astype(np.float32)) for k, v in local.items()}, glob)
    np.testing.assert_allclose(again_l["b"].numpy(), new.local["b"].astype(np.float32), atol=5e-3)
    np.testing.assert_allclose(again_g["c"].numpy(), new.global_["c"].astype(np.float32), atol=5e-3)


def test_planted_checks_on_perfect_and_scrambled_maps(truth, rng):
    h = truth["hierarchy"].to_numpy()
    lw = np.stack([1 - np.clip(h, 0, 1), np.clip(h, 0, 1)], axis=1)
    xy = truth[["rf_x", "rf_y"]].to_numpy()
    perfect = NetworkMaps(lw, xy, np.zeros(len(h)), np.zeros((len(h), 2)), ("0", "1"))
    checks = planted_checks(perfect, truth)
    assert checks["hierarchy_rho"] > 0.99 and checks["rf_r_x"] > 0.99 and checks["rf_r_y"] > 0.99
    assert checks["n_visual"] > checks["n_early"] > 10
    perm = rng.permutation(len(h))
    scrambled = NetworkMaps(lw[perm], xy[perm], np.zeros(len(h)), np.zeros((len(h), 2)), ("0", "1"))
    bad = planted_checks(scrambled, truth)
    assert abs(bad["hierarchy_rho"]) < 0.2 and abs(bad["rf_r_x"]) < 0.3
    with pytest.raises(ValueError, match="vertices"):
        planted_checks(NetworkMaps(lw[:5], xy[:5], np.zeros(5), np.zeros((5, 2)), ("0", "1")), truth)


def test_hierarchy_profile_bins_means_and_masks():
    h = np.array([0.0, 0.05, 0.15, 0.5, 0.55, 1.0, 1.2, -0.1, np.nan])
    v = np.array([1.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0, 100.0])
    prof = hierarchy_profile(v, h, n_bins=4)
    np.testing.assert_allclose(prof["centre"], [0.125, 0.375, 0.625, 0.875])
    # bins [0, .25) [.25, .5) [.5, .75) [.75, 1]; out-of-range values go to the end bins, NaN is left out
    np.testing.assert_array_equal(prof["n"], [4, 0, 2, 2])
    np.testing.assert_allclose(prof["mean"], [(1 + 3 + 5 + 15) / 4, np.nan, 8.0, 12.0])
    masked = hierarchy_profile(v, h, mask=v > 4, n_bins=4)
    np.testing.assert_array_equal(masked["n"], [2, 0, 2, 2])
    with pytest.raises(ValueError, match="shape"):
        hierarchy_profile(v[:3], h)
    with pytest.raises(ValueError, match="mask"):
        hierarchy_profile(v, h, mask=np.ones(3, bool))
    with pytest.raises(ValueError, match="n_bins"):
        hierarchy_profile(v, h, n_bins=0)


def test_b2n_train_config_is_a_train_config_with_overrides(tmp_path):
    b2n = B2NConfig.preset("notebook")
    cfg = b2n.train_config(tmp_path, 1, "brainnet-tiny-random", tmp_path / "run")
    assert isinstance(cfg, TrainConfig) and cfg.model == "factortopy" and cfg.subjects == ("subj01",)
    assert cfg.data_dir == str(tmp_path) and cfg.out_dir == str(tmp_path / "run")
    assert cfg.backbone == "brainnet-tiny-random" and cfg.resume is False
    assert {k: getattr(cfg, k) for k in B2NConfig.TRAIN_FIELDS} == {k: getattr(b2n, k) for k in B2NConfig.TRAIN_FIELDS}
    assert cfg.model_options == b2n.model_options
    more = b2n.train_config(tmp_path, "subj02", "x", tmp_path, max_epochs=2, seed=3,
                            model_options={"bottleneck": 4, "n_freqs": 2})
    assert (more.max_epochs, more.seed, more.subjects) == (2, 3, ("subj02",))
    assert more.model_options == {**b2n.model_options, "bottleneck": 4, "n_freqs": 2}
    assert b2n.train_config(tmp_path, 1, "x", tmp_path).model_options["bottleneck"] == 32  # defaults untouched
    with pytest.raises(TypeError):
        b2n.train_config(tmp_path, 1, "x", tmp_path, epochs=3)  # TrainConfig spells it max_epochs
    with pytest.raises(ValueError):
        b2n.train_config(tmp_path, 1, "x", tmp_path, lr=-1.0)


def test_image_tokens_standardised_like_the_training_tokens(prepared):
    ds = PreparedDataset(prepared)
    backbone = create_backbone("brainnet-tiny-random")
    features, stats = network_features(ds, backbone, pool=None)
    assert stats is not None and set(stats.local_mean) == set(features.layer_names)
    local, glob = image_tokens(backbone, ds.images[3], stats)
    raw_local, raw_glob = image_tokens(backbone, ds.images[3])
    raw, none = network_features(ds, backbone, pool=None, standardize=False)
    assert none is None
    for name in features.layer_names:
        m, sd = stats.local_mean[name][:, None, None], stats.local_std[name][:, None, None]
        np.testing.assert_allclose(local[name][0].numpy(), (raw_local[name][0].numpy() - m) / sd, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(glob[name][0].numpy(), (raw_glob[name][0].numpy() - stats.global_mean[name])
                                   / stats.global_std[name], rtol=1e-4, atol=1e-4)
        # the image's unpooled tokens are those cached for its row (up to fp16 and the resize of 32 -> 64 px)
        for mine, cached in ((local[name][0], features.local[name][3]), (raw_local[name][0], raw.local[name][3])):
            mine, cached = mine.numpy().ravel(), np.asarray(cached, np.float32).ravel()
            assert pearson_r(mine[:, None], cached[:, None])[0] > 0.99
            assert np.abs(mine - cached).mean() < 0.05 * cached.std()
    with pytest.raises(ValueError, match="shape"):
        image_tokens(backbone, ds.images[3][..., 0])


def test_trained_clearer():
    rows = {"t": {"hierarchy_rho": 0.7}, "u": {"hierarchy_rho": 0.2}, "n": {"best_val_r": 0.1}}
    assert trained_clearer(rows, "t", "u") is True
    assert trained_clearer(rows, "u", "t") is False
    assert trained_clearer(rows, "t", "n") is None and trained_clearer(rows, "t", "missing") is None


def test_network_figures(prepared, truth, tmp_path, rng):
    vert = PreparedDataset(prepared).subject("subj01").vertices
    v = len(vert["hemi"])
    h = truth["hierarchy"].to_numpy()
    lw = np.stack([1 - np.clip(h, 0, 1), np.clip(h, 0, 1)], axis=1)
    maps = {"a": NetworkMaps(lw, truth[["rf_x", "rf_y"]].to_numpy(), np.zeros(v), np.zeros((v, 2)), ("0", "1")),
            "b": NetworkMaps(lw[::-1].copy(), np.zeros((v, 2)), np.zeros(v), np.zeros((v, 2)), ("0", "1"))}
    visual = truth["kind"].to_numpy() == 1
    profiles = {n: hierarchy_profile(m.expected_layer, h, visual) for n, m in maps.items()}
    out = tmp_path / "side.png"
    fig = plot_backbones_side_by_side(maps, vert["hemi"], vert["index"], mesh=prepared, view="occipital",
                                      hierarchy=h, mask=visual, profiles=profiles, output_file=out)
    assert out.stat().st_size > 10_000 and len(fig.axes) >= 6
    lines = fig.axes[2].get_lines()  # the bin means of backbone "a"
    np.testing.assert_allclose(lines[0].get_ydata(), profiles["a"]["mean"])
    two = plot_backbones_side_by_side(maps, vert["hemi"], vert["index"], mesh=prepared, view="occipital")
    assert len(two.axes) >= 4 and not any(ax.get_xlabel().startswith("planted") for ax in two.axes)
    single = plot_layer_vs_hierarchy(h[visual], maps["a"].expected_layer[visual], 2, profiles["a"],
                                     output_file=tmp_path / "lh.png")
    assert single.axes[0].get_ylim() == (-0.1, 1.1) and (tmp_path / "lh.png").is_file()
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    tops = {"a": {"V1": rng.uniform(0, 1, (8, 8, 3))}, "b": {}}
    fig = plot_top_channels(image, tops, ["V1", "hV4"], {"V1": 12}, output_file=tmp_path / "top.png")
    assert len(fig.axes) == 6 and fig.axes[1].get_title() == "V1 (12 vertices)" and (tmp_path / "top.png").is_file()
    assert len(fig.axes[1].get_images()) == 1 and not fig.axes[2].get_images() and not fig.axes[4].get_images()
    with pytest.raises(ValueError, match="empty"):
        plot_top_channels(image, {}, ["V1"])


def test_short_training_recovers_receptive_fields(prepared, truth, tmp_path):
    """A short FactorTopy run on the tiny preset: positions follow the planted RFs, layers the hierarchy."""
    torch.set_num_threads(1)
    cfg = B2NConfig.preset("notebook").train_config(
        prepared, "subj01", "brainnet-tiny", tmp_path / "run", max_epochs=12, vertices_per_step=None, lr=3e-3,
        model_options={"bottleneck": 16, "mlp_hidden": 32, "reg_decay_steps": 50})
    features, _ = network_features(prepared, "brainnet-tiny", pool=cfg.pool)
    fit = fit_encoder(cfg, features=features)
    maps = network_maps(fit.model, "subj01")
    assert maps.readout.shape[1] == 16
    row = run_summary(fit, maps, truth, seconds=1.234)
    assert row["best_val_r"] > 0.1 and row["steps"] == fit.global_step and row["train_seconds"] == 1.2
    assert row["rf_r_x"] > 0.6 and row["rf_r_y"] > 0.6, row
    assert row["hierarchy_rho"] > 0.2, row
    assert set(run_summary(fit)) == {"best_val_r", "test_mean_r", "steps"}  # no truth: no planted checks
