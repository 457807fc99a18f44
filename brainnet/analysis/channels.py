"""Channels of a brain-to-network model: clusters of vertices that read the same features.

* :func:`cluster_channels` — cosine k-means of the per-vertex readout weights (k = 1000 by
  default) then Ward linkage of the centroids cut to a few clusters: the channel map. Method
  "kernel" clusters the rows of W·Wᵀ instead, as Brain Decodes Deep Nets does
  (:func:`kernel_rows`);
* :func:`top_channel_image` — the main directions (PCA) of one ROI's readout weights, projected
  on an image's feature map, as an RGB picture of what that ROI reads (or BDDN's variant:
  ``pca="lowrank"``, ``joint_clip=True``).
* :func:`layer_weighted_map` — the feature map that projection expects.
* :func:`bottleneck_maps` / :func:`roi_top_channel_images` — a FactorTopy's bottleneck maps of
  one image, and what each ROI's channels read in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.cluster.hierarchy import fcluster, linkage
from tqdm.auto import tqdm

__all__ = [
    "bottleneck_maps",
    "cluster_channels",
    "kernel_rows",
    "layer_weighted_map",
    "roi_top_channel_images",
    "spherical_kmeans",
    "top_channel_image",
]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _best_centroid(x: np.ndarray, centroids: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Index and cosine of the nearest centroid for each row, in row chunks of ``chunk``."""
    labels = np.empty(len(x), dtype=np.int64)
    best = np.empty(len(x), dtype=x.dtype)
    for start in range(0, len(x), chunk):
        sims = x[start : start + chunk] @ centroids.T
        labels[start : start + chunk] = np.argmax(sims, axis=1)
        best[start : start + chunk] = sims[np.arange(len(sims)), labels[start : start + chunk]]
    return labels, best


def _kmeanspp_init(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding with the cosine distance 1 - cos; returns (k, D) unit rows."""
    centroids = np.empty((k, x.shape[1]), dtype=x.dtype)
    centroids[0] = x[rng.integers(len(x))]
    dist = np.clip(1.0 - x @ centroids[0], 0.0, None)
    for j in range(1, k):
        total = dist.sum()
        idx = rng.choice(len(x), p=dist / total) if total > 0 else rng.integers(len(x))
        centroids[j] = x[idx]
        np.minimum(dist, np.clip(1.0 - x @ centroids[j], 0.0, None), out=dist)
    return centroids


def spherical_kmeans(
    weights: np.ndarray,
    k: int,
    seed: int = 0,
    n_iter: int = 100,
    tol: float = 1e-6,
    chunk: int = 16384,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine (spherical) k-means, deterministic for a seed.

    Rows are scaled to unit length; k-means++ seeding on 1 - cos; each iteration assigns every
    row to the centroid of highest cosine and sets each centroid to the normalised sum of its
    rows (an emptied centroid is moved to the row it fits worst). Stops when the mean cosine
    improves by less than ``tol``.

    Parameters
    ----------
    weights : array of shape (n_rows, n_features); an all-zero row has cosine 0 with every
        centroid and is assigned to centroid 0.
    k : number of centroids, 1 <= k <= n_rows.
    chunk : rows per matrix product (memory knob: chunk x k floats at a time).

    Returns
    -------
    labels : int64 array of shape (n_rows,).
    centroids : float32 array of shape (k, n_features), unit rows.
    """
    x = _unit_rows(np.asarray(weights, dtype=np.float32))
    if not 1 <= k <= len(x):
        raise ValueError(f"k must be in [1, {len(x)}], got {k}")
    rng = np.random.default_rng(seed)
    centroids = _kmeanspp_init(x, k, rng)
    previous = -np.inf
    bar = tqdm(range(n_iter), desc="spherical k-means", disable=not progress, leave=False)
    for _ in bar:
        labels, cos = _best_centroid(x, centroids, chunk)
        score = float(cos.mean())
        counts = np.bincount(labels, minlength=k)
        order = np.argsort(labels, kind="stable")
        present = np.flatnonzero(counts)
        sums = np.zeros_like(centroids)
        sums[present] = np.add.reduceat(x[order], np.cumsum(counts)[present] - counts[present])
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            worst = np.argsort(cos, kind="stable")[: len(empty)]
            sums[empty] = x[worst]
        centroids = _unit_rows(sums)
        if score - previous < tol and not len(empty):
            break
        previous = score
    labels, _ = _best_centroid(x, centroids, chunk)
    return labels, centroids


#: Methods of :func:`cluster_channels`.
CHANNEL_METHODS = ("weights", "kernel")
#: Top-channel directions of :func:`top_channel_image`.
TOP_CHANNEL_PCA = ("svd", "lowrank")


def kernel_rows(weights: np.ndarray) -> np.ndarray:
    """Rows isometric to those of ``W·Wᵀ``: the same dot products and cosines, in ``rank(W)`` columns.

    With ``W = U S Vᵀ`` (thin SVD), row i of ``W·Wᵀ`` is ``(U S²)_i Uᵀ`` and ``Uᵀ`` has orthonormal
    rows, so the rows of ``U S²`` have the dot products of the (n_vertices, n_vertices) kernel's
    rows without building it (cosine k-means on either gives the same clusters).

    Parameters
    ----------
    weights : array of shape (n_vertices, n_features).

    Returns
    -------
    float64 array of shape (n_vertices, r), r = the number of non-negligible singular values.
    """
    u, s, _ = np.linalg.svd(np.asarray(weights, dtype=np.float64), full_matrices=False)
    keep = s > s.max(initial=0.0) * max(u.shape) * np.finfo(np.float64).eps
    return u[:, keep] * s[keep] ** 2


def cluster_channels(
    weights: np.ndarray,
    n_clusters: int = 20,
    n_kmeans: int = 1000,
    seed: int = 0,
    progress: bool = False,
    method: str = "weights",
) -> np.ndarray:
    """Channel label per vertex from its readout weights.

    ``method`` "weights": cosine k-means of the rows (``n_kmeans`` centroids, capped at the
    number of vertices), then Ward linkage of the unit centroids cut into ``n_clusters`` clusters;
    every vertex takes its centroid's cluster. The result depends only on the rows' directions
    (scale-invariant per vertex) and on ``seed``. "kernel" (Brain Decodes Deep Nets): the cosine
    k-means runs on the rows of ``W·Wᵀ`` (:func:`kernel_rows`; a vertex is described by its dot
    products with every vertex), and the Ward linkage on the rows of the centroids' cosine
    similarity matrix (diagonal zeroed).

    Parameters
    ----------
    weights : array of shape (n_vertices, n_features) — per-vertex readout weights.
    n_clusters : number of channels, 1 <= n_clusters <= min(n_kmeans, n_vertices).
    method : one of :data:`CHANNEL_METHODS`.

    Returns
    -------
    labels : int64 array of shape (n_vertices,) with values 0 .. n_clusters - 1; label 0 is the
        largest channel, then by decreasing size (ties: the channel holding the lower vertex
        index first).
    """
    weights = np.asarray(weights)
    if weights.ndim != 2 or weights.shape[0] < 1 or weights.shape[1] < 1:
        raise ValueError(f"weights must have shape (n_vertices, n_features), got {weights.shape}")
    if not np.all(np.isfinite(weights)):
        raise ValueError("weights contain NaN or inf")
    if method not in CHANNEL_METHODS:
        raise ValueError(f"method must be one of {CHANNEL_METHODS}, got {method!r}")
    k = min(int(n_kmeans), len(weights))
    if not 1 <= n_clusters <= k:
        raise ValueError(
            f"n_clusters must be in [1, min(n_kmeans, n_vertices) = {k}], got {n_clusters}"
        )
    rows = kernel_rows(weights) if method == "kernel" else weights
    fine, centroids = spherical_kmeans(rows, k, seed=seed, progress=progress)
    if n_clusters == k:
        coarse = np.arange(k)
    elif n_clusters == 1:
        coarse = np.zeros(k, dtype=np.int64)
    else:
        features = centroids.astype(np.float64)
        if method == "kernel":
            features = features @ features.T
            np.fill_diagonal(features, 0.0)
        tree = linkage(features, method="ward")
        coarse = fcluster(tree, t=n_clusters, criterion="maxclust") - 1
    raw = coarse[fine]
    # deterministic order: size descending, then first vertex index
    ids = np.unique(raw)
    sizes = np.array([np.sum(raw == i) for i in ids])
    first = np.array([np.flatnonzero(raw == i)[0] for i in ids])
    order = ids[np.lexsort((first, -sizes))]
    remap = np.empty(int(raw.max()) + 1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    return remap[raw]


def layer_weighted_map(maps: np.ndarray, layer_weights: np.ndarray) -> np.ndarray:
    """Mix per-layer feature maps with (ROI-mean) layer-selector weights.

    Parameters
    ----------
    maps : array of shape (n_layers, D, H, W) — bottleneck feature maps of one image.
    layer_weights : array of shape (n_layers,) — e.g. the mean softmax layer weights of an
        ROI's vertices.

    Returns
    -------
    array of shape (D, H, W): ``sum_l layer_weights[l] * maps[l]``.
    """
    maps = np.asarray(maps)
    layer_weights = np.asarray(layer_weights, dtype=np.float64)
    if maps.ndim != 4 or layer_weights.shape != (maps.shape[0],):
        raise ValueError(
            f"maps must have shape (n_layers, D, H, W) and layer_weights (n_layers,), got "
            f"{maps.shape} and {layer_weights.shape}"
        )
    return np.tensordot(layer_weights, maps, axes=1)


def top_channel_image(
    roi_weights: np.ndarray,
    feature_map: np.ndarray,
    n_components: int = 3,
    clip: tuple[float, float] = (5, 95),
    pca: str = "svd",
    joint_clip: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """RGB picture of the ROI's main readout directions on one image's feature map.

    ``n_components`` directions in feature space are projected on the feature vector of every
    pixel, clipped at the ``clip`` percentiles and scaled to [0, 1]. Directions (``pca``):

    * "svd": the principal directions of the ROI's readout weights (rows centred over the
      vertices, exact SVD; unit vectors);
    * "lowrank" (Brain Decodes Deep Nets): ``torch.pca_lowrank`` of the (D, n_roi_vertices)
      matrix ``Wᵀ`` (which centres each vertex's weights over the channels; randomised, seeded by
      ``seed``) gives vertex-space components V (n, C); the directions are the columns of ``Wᵀ V``
      (not normalised).

    Signs are fixed so that each direction's largest-magnitude entry is positive (deterministic).
    The percentiles are taken per component, or over all components together with ``joint_clip``.

    Parameters
    ----------
    roi_weights : array of shape (n_roi_vertices, D), at least ``n_components + 1`` rows.
    feature_map : array of shape (D, H, W) — the (layer-weighted, :func:`layer_weighted_map`)
        bottleneck feature map of an image.
    n_components : components, 1..D (3 for RGB).
    clip : (low, high) percentiles, 0 <= low < high <= 100.
    pca : one of :data:`TOP_CHANNEL_PCA`.

    Returns
    -------
    float32 array of shape (H, W, n_components) in [0, 1]; a component constant over the
    image (every component, with ``joint_clip``) maps to 0.
    """
    roi_weights = np.asarray(roi_weights, dtype=np.float64)
    feature_map = np.asarray(feature_map, dtype=np.float64)
    if roi_weights.ndim != 2 or feature_map.ndim != 3:
        raise ValueError(
            f"roi_weights must have shape (n_vertices, D) and feature_map (D, H, W), got "
            f"{roi_weights.shape} and {feature_map.shape}"
        )
    if roi_weights.shape[1] != feature_map.shape[0]:
        raise ValueError(
            f"feature widths differ: roi_weights has D={roi_weights.shape[1]}, feature_map "
            f"D={feature_map.shape[0]}"
        )
    if not 1 <= n_components <= min(roi_weights.shape[0] - 1, roi_weights.shape[1]):
        raise ValueError(
            f"n_components={n_components} needs at least {n_components + 1} ROI vertices and "
            f"{n_components} features, got {roi_weights.shape}"
        )
    low, high = clip
    if not 0 <= low < high <= 100:
        raise ValueError(f"clip must satisfy 0 <= low < high <= 100, got {clip}")
    if pca == "svd":
        centred = roi_weights - roi_weights.mean(axis=0)
        components = np.linalg.svd(centred, full_matrices=False)[2][:n_components]  # (C, D)
    elif pca == "lowrank":
        wt = torch.from_numpy(roi_weights.T.copy())  # (D, n)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            v = torch.pca_lowrank(wt, q=n_components)[2]  # (n, C)
        components = (wt @ v).numpy().T  # (C, D)
    else:
        raise ValueError(f"pca must be one of {TOP_CHANNEL_PCA}, got {pca!r}")
    signs = np.sign(components[np.arange(n_components), np.argmax(np.abs(components), axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    d, h, w = feature_map.shape
    proj = components @ feature_map.reshape(d, h * w)  # (C, H*W)
    axis = None if joint_clip else 1
    lo = np.percentile(proj, low, axis=axis, keepdims=True)
    hi = np.percentile(proj, high, axis=axis, keepdims=True)
    span = hi - lo
    scaled = np.divide(np.clip(proj, lo, hi) - lo, span, out=np.zeros_like(proj), where=span > 0)
    return scaled.T.reshape(h, w, n_components).astype(np.float32)


def bottleneck_maps(model, local: Mapping, size: int | None = None) -> np.ndarray:
    """Per-layer bottleneck maps of ONE image at full token resolution.

    Parameters
    ----------
    model : FactorTopy (its per-layer 1x1 projections ``local_proj``).
    local : layer -> (1, C_l, h_l, w_l) or (C_l, h_l, w_l) tokens (the backbone's, unpooled;
        standardised the way the training tokens were).
    size : output side (default: the largest grid); every layer is resized bilinearly to it.

    Returns
    -------
    float32 (L, D, size, size).
    """
    names = list(model.config.layer_names) or list(local)
    if len(names) != len(model.local_proj):
        raise ValueError(f"model has {len(model.local_proj)} layers, tokens have {len(names)}")
    missing = [n for n in names if n not in local]
    if missing:
        raise KeyError(f"tokens lack layers {missing}")
    xs = []
    for n in names:
        x = torch.as_tensor(local[n]).float()
        xs.append(x[None] if x.ndim == 3 else x)
        if xs[-1].ndim != 4 or xs[-1].shape[0] != 1:
            raise ValueError(f"layer {n}: expected one image (1, C, h, w), got {tuple(xs[-1].shape)}")
    side = size or max(max(x.shape[-2:]) for x in xs)
    out = []
    with torch.no_grad():
        for x, proj in zip(xs, model.local_proj):
            y = proj(x.to(proj.weight.dtype)).float()
            if y.shape[-2:] != (side, side):
                y = F.interpolate(y, size=(side, side), mode="bilinear", align_corners=False)
            out.append(y[0])
    return torch.stack(out).numpy().astype(np.float32)


def roi_top_channel_images(model, maps, local: Mapping, labels: np.ndarray, names: Sequence[str],
                           rois: Sequence[str], n_components: int = 3, **options) -> dict[str, np.ndarray]:
    """Top channels of each named ROI on one image: ROI-mean layer weights mix the bottleneck
    maps (:func:`bottleneck_maps`), then the PCA of the ROI's readout weights colours them
    (:func:`top_channel_image`; ``options``: its ``clip``, ``pca``, ``joint_clip``, ``seed``).

    Parameters
    ----------
    maps : a :class:`~brainnet.analysis.brain_to_network.NetworkMaps` (``layer_weights`` (V, L),
        ``readout`` (V, D)).
    labels : int (V,) ROI code per vertex; names : names[code]; rois : ROI names to draw.
    local : the image's tokens (see :func:`bottleneck_maps`).

    Returns
    -------
    ROI name -> float32 (H, W, n_components) in [0, 1]; ROIs with fewer than n_components + 1
    vertices are left out.
    """
    labels = np.asarray(labels)
    if labels.shape != (len(maps.readout),):
        raise ValueError(f"labels must have shape ({len(maps.readout)},), got {labels.shape}")
    stack = bottleneck_maps(model, local)
    out = {}
    for roi in rois:
        if roi not in names:
            raise KeyError(f"ROI {roi!r} not among {list(names)}")
        sel = labels == list(names).index(roi)
        if sel.sum() < n_components + 1:
            continue
        fmap = layer_weighted_map(stack, maps.layer_weights[sel].mean(axis=0))
        out[roi] = top_channel_image(maps.readout[sel], fmap, n_components=n_components, **options)
    return out
