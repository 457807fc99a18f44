"""Brain to network: maps from a FactorTopy, channel map on planted clusters, hierarchy correlation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from brainnet.analysis.brain_to_network import (
    B2NConfig,
    NetworkMaps,
    bottleneck_maps,
    channel_labels,
    expected_layer,
    hierarchy_correlation,
    network_maps,
    planted_checks,
    roi_top_channel_images,
    standardize_tokens,
    train_factortopy,
)
from brainnet.analysis.truth import vertex_truth
from brainnet.models import FactorTopy, FactorTopyConfig
from brainnet.plotting import plot_channel_map
from brainnet.training.batches import FeatureSet, subject_vertices
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
    torch.manual_seed(0)
    cfg = FactorTopyConfig(in_channels=WIDTHS, layer_names=NAMES, bottleneck=bottleneck, mlp_hidden=16, n_freqs=4,
                           chunk_size=None)
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
    torch.manual_seed(1)
    with torch.no_grad():
        for selector in (model.layer_selector, model.retina, model.scale_selector):
            head = [m for m in selector.modules() if isinstance(m, torch.nn.Linear)][-1]
            head.weight.normal_(0, 1.0)
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
    with np.load(prepared / "subj01" / "vertices.npz") as v:
        hemi, index = v["hemi"], v["index"]
    out = tmp_path / "channels.png"
    plot_channel_map(labels, hemi, index, mesh=prepared / "surfaces" / "fsaverage.npz", view="occipital",
                     output_file=out)
    assert out.stat().st_size > 10_000


def _tokens(rng, n=1, grids=(8, 4, 2)):
    local = {k: torch.from_numpy(rng.standard_normal((n, c, g, g)).astype(np.float32))
             for k, c, g in zip(NAMES, WIDTHS, grids)}
    glob = {k: torch.from_numpy(rng.standard_normal((n, c)).astype(np.float32)) for k, c in zip(NAMES, WIDTHS)}
    return local, glob


def test_bottleneck_maps_and_top_channels(prepared, truth, rng):
    model = _model(prepared)
    local, _ = _tokens(rng)
    stack = bottleneck_maps(model, local)
    assert stack.shape == (3, 8, 8, 8)
    expect = model.local_proj[0](local["a"]).detach().numpy()[0]  # the 8x8 layer: no resize
    np.testing.assert_allclose(stack[0], expect, atol=1e-5)
    with pytest.raises(KeyError):
        bottleneck_maps(model, {"a": local["a"]})
    maps = network_maps(model, "subj01")
    with np.load(prepared / "subj01" / "rois.npz") as rois:
        labels, names = rois["prf-visualrois"], list(rois["prf-visualrois__names"])
    present = [names[c] for c in np.unique(labels[labels > 0])][:2]
    images = roi_top_channel_images(model, maps, local, labels, names, present)
    assert set(images) == set(present)
    for img in images.values():
        assert img.shape == (8, 8, 3) and img.min() >= 0 and img.max() <= 1 and img.max() > 0.9
    with pytest.raises(KeyError, match="not among"):
        roi_top_channel_images(model, maps, local, labels, names, ["nowhere"])


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


def test_short_training_recovers_receptive_fields(prepared, truth, tmp_path):
    """A short FactorTopy run on the tiny preset: positions follow the planted RFs, layers the hierarchy."""
    torch.set_num_threads(1)
    cfg = B2NConfig(epochs=12, vertices_per_step=None, lr=3e-3, bottleneck=16, mlp_hidden=32, reg_decay_steps=50)
    fit, features, stats = train_factortopy(prepared, "subj01", "brainnet-tiny", tmp_path / "run", cfg)
    assert stats is not None and set(stats.local_mean) == set(features.layer_names)
    checks = planted_checks(network_maps(fit.model, "subj01"), truth)
    assert fit.summary["best_val_r"] > 0.1
    assert checks["rf_r_x"] > 0.6 and checks["rf_r_y"] > 0.6, checks
    assert checks["hierarchy_rho"] > 0.2, checks
