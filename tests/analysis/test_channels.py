"""Channel clustering (cosine k-means + Ward) and top-channel images on planted structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from brainnet.analysis.brain_to_network import NetworkMaps
from brainnet.analysis.channels import (
    bottleneck_maps,
    cluster_channels,
    layer_weighted_map,
    roi_top_channel_images,
    spherical_kmeans,
    top_channel_image,
)
from brainnet.models import FactorTopy, FactorTopyConfig

WIDTHS = (6, 8, 10)
NAMES = ("a", "b", "c")


def planted_weights(rng, n_dirs=5, per_dir=(300, 250, 200, 150, 100), d=32, noise=0.15):
    """Rows = random positive scale x (one of n_dirs random unit directions + noise)."""
    dirs = rng.normal(size=(n_dirs, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    truth = np.repeat(np.arange(n_dirs), per_dir)
    w = dirs[truth] + noise * rng.normal(size=(len(truth), d)) / np.sqrt(d)
    w *= rng.uniform(0.1, 10.0, size=(len(truth), 1))
    perm = rng.permutation(len(truth))
    return w[perm], truth[perm]


def test_planted_clusters_recovered_and_ordered_by_size(rng):
    w, truth = planted_weights(rng)
    labels = cluster_channels(w, n_clusters=5, n_kmeans=60, seed=0)
    assert adjusted_rand_score(truth, labels) > 0.99
    sizes = np.bincount(labels)
    assert list(sizes) == [300, 250, 200, 150, 100]  # label 0 = largest


def test_deterministic_for_seed_and_scale_invariant(rng):
    w, _ = planted_weights(rng, noise=1.5)  # overlapping clusters: the seed matters here
    a = cluster_channels(w, n_clusters=4, n_kmeans=40, seed=3)
    np.testing.assert_array_equal(a, cluster_channels(w, n_clusters=4, n_kmeans=40, seed=3))
    scaled = w * rng.uniform(0.01, 100.0, size=(len(w), 1))
    np.testing.assert_array_equal(a, cluster_channels(scaled, n_clusters=4, n_kmeans=40, seed=3))
    assert set(np.unique(a)) == {0, 1, 2, 3}


def test_n_kmeans_capped_at_vertices_and_bad_input(rng):
    w = rng.normal(size=(12, 4))
    labels = cluster_channels(w, n_clusters=3, n_kmeans=1000, seed=0)
    assert labels.shape == (12,) and set(np.unique(labels)) == {0, 1, 2}
    with pytest.raises(ValueError, match="n_clusters"):
        cluster_channels(w, n_clusters=13)
    with pytest.raises(ValueError, match="shape"):
        cluster_channels(w[0])
    w[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cluster_channels(w)


def test_spherical_kmeans_centroids_are_unit_means(rng):
    w, truth = planted_weights(rng, noise=0.05)
    labels, centroids = spherical_kmeans(w, 5, seed=1)
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    assert adjusted_rand_score(truth, labels) > 0.99
    unit = w / np.linalg.norm(w, axis=1, keepdims=True)
    mean_dir = unit[labels == 0].mean(axis=0)
    np.testing.assert_allclose(centroids[0], mean_dir / np.linalg.norm(mean_dir), atol=1e-5)


def test_top_channel_image_lights_up_planted_region(rng):
    d, h, w = 16, 24, 32
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    u *= np.sign(u[np.argmax(np.abs(u))])  # largest entry positive: the sign convention
    roi = rng.normal(size=(200, 1)) * 3 * u + 0.1 * rng.normal(size=(200, d))  # PC1 along u
    fmap = 0.3 * rng.normal(size=(d, h, w))
    fmap[:, 4:12, 6:18] += 4.0 * u[:, None, None]  # pattern along u in one region
    rgb = top_channel_image(roi, fmap)
    assert rgb.shape == (h, w, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    inside = np.zeros((h, w), bool)
    inside[4:12, 6:18] = True
    assert rgb[inside, 0].mean() > 0.95
    assert rgb[~inside, 0].mean() < 0.6
    # clipped at the 95th percentile: the top 5 % of pixels saturate, all inside the region
    saturated = rgb[..., 0] == 1.0
    assert 0.04 <= saturated.mean() <= 0.06 and np.all(inside[saturated])
    assert 0.04 <= np.mean(rgb[..., 0] == 0.0) <= 0.06


def test_top_channel_image_bad_input_and_constant(rng):
    roi = rng.normal(size=(10, 4))
    with pytest.raises(ValueError, match="feature widths"):
        top_channel_image(roi, rng.normal(size=(5, 3, 3)))
    with pytest.raises(ValueError, match="n_components"):
        top_channel_image(roi[:3], rng.normal(size=(4, 3, 3)))
    with pytest.raises(ValueError, match="clip"):
        top_channel_image(roi, rng.normal(size=(4, 3, 3)), clip=(50, 10))
    flat = top_channel_image(roi, np.ones((4, 3, 3)))
    assert np.all(flat == 0.0)


def test_layer_weighted_map(rng):
    maps = rng.normal(size=(3, 4, 5, 6))
    out = layer_weighted_map(maps, np.array([0.2, 0.0, 0.8]))
    np.testing.assert_allclose(out, 0.2 * maps[0] + 0.8 * maps[2])
    with pytest.raises(ValueError, match="layer_weights"):
        layer_weighted_map(maps, np.ones(2))


def _factortopy(rng, n_vertices=60, bottleneck=8):
    """A FactorTopy on random sphere points (no dataset needed); weights from a local generator."""
    coords = rng.normal(size=(n_vertices, 3))
    coords = (100 * coords / np.linalg.norm(coords, axis=1, keepdims=True)).astype(np.float32)
    hemi = (np.arange(n_vertices) >= n_vertices // 2).astype(np.int64)
    cfg = FactorTopyConfig(in_channels=WIDTHS, layer_names=NAMES, bottleneck=bottleneck, mlp_hidden=16, n_freqs=4,
                           chunk_size=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return FactorTopy(cfg, {"subj01": coords}, {"subj01": hemi}).eval()


def _tokens(rng, grids=(8, 4, 2)):
    return {k: torch.from_numpy(rng.standard_normal((1, c, g, g)).astype(np.float32))
            for k, c, g in zip(NAMES, WIDTHS, grids)}


def test_bottleneck_maps_resize_every_layer_to_the_largest_grid(rng):
    model = _factortopy(rng)
    local = _tokens(rng)
    stack = bottleneck_maps(model, local)
    assert stack.shape == (3, 8, 8, 8) and stack.dtype == np.float32
    np.testing.assert_allclose(stack[0], model.local_proj[0](local["a"]).detach().numpy()[0], atol=1e-5)  # no resize
    # a spatially constant 2x2 layer stays constant after the bilinear resize
    flat = dict(local, c=torch.ones(1, WIDTHS[2], 2, 2))
    c_map = bottleneck_maps(model, flat)[2]
    np.testing.assert_allclose(c_map, c_map[:, :1, :1] * np.ones((1, 8, 8)), atol=1e-5)
    assert bottleneck_maps(model, {k: v[0] for k, v in local.items()}, size=4).shape == (3, 8, 4, 4)  # (C, h, w) ok
    with pytest.raises(KeyError, match="lack"):
        bottleneck_maps(model, {"a": local["a"]})
    with pytest.raises(ValueError, match="one image"):
        bottleneck_maps(model, {k: v.repeat(2, 1, 1, 1) for k, v in local.items()})


def test_roi_top_channel_images(rng):
    model = _factortopy(rng)
    v = 60
    labels = np.repeat([0, 1, 2, 3], [20, 20, 18, 2])  # ROI "small" is too small for 3 components
    names = ["Unknown", "V1", "V2", "small"]
    lw = rng.dirichlet(np.ones(3), v).astype(np.float32)
    maps = NetworkMaps(lw, np.zeros((v, 2), np.float32), np.zeros(v, np.float32),
                       rng.normal(size=(v, 8)).astype(np.float32), NAMES)
    local = _tokens(rng)
    images = roi_top_channel_images(model, maps, local, labels, names, ["V1", "V2", "small"])
    assert set(images) == {"V1", "V2"}
    stack = bottleneck_maps(model, local)
    sel = labels == 1
    expect = top_channel_image(maps.readout[sel], layer_weighted_map(stack, lw[sel].mean(axis=0)))
    np.testing.assert_allclose(images["V1"], expect, atol=1e-6)
    for img in images.values():
        assert img.shape == (8, 8, 3) and img.min() >= 0 and img.max() <= 1 and img.max() > 0.9
    with pytest.raises(KeyError, match="not among"):
        roi_top_channel_images(model, maps, local, labels, names, ["nowhere"])
    with pytest.raises(ValueError, match="labels"):
        roi_top_channel_images(model, maps, local, labels[:10], names, ["V1"])
