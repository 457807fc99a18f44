"""Brain to network: read a trained FactorTopy's selectors as maps of a backbone on cortex.

A FactorTopy model (:class:`brainnet.models.FactorTopy`) chooses, per vertex, a backbone layer
(softmax weights), an image position (x, y) and a local / global mix, then reads the
bottleneck feature out with its own weight vector. This module turns a trained model into
those maps and the derived quantities of the Brain Decodes Deep Nets figures:

* :func:`network_maps` — layer weights, positions, scale and readout weights per vertex;
* :func:`expected_layer` / :func:`hierarchy_correlation` — the preferred layer ``sum_l l w_l``
  and its Spearman correlation with a hierarchy (nsd-mini's planted one);
* :func:`channel_labels` — the channel map (cosine k-means + Ward on the readout weights);
* :func:`bottleneck_maps` / :func:`roi_top_channel_images` — what an ROI reads in one image;
* :func:`standardize_tokens` — z-score cached tokens per channel, so backbones whose activation
  scale differs between layers (an untrained CNN's shrinks ~2.6x per stage) are compared on an
  equal footing;
* :func:`train_factortopy` — a notebook-sized training run through
  :func:`brainnet.training.fit.fit_encoder`;
* :func:`planted_checks` — layer hierarchy and RF recovery against nsd-mini's planted truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats

from brainnet.analysis.channels import cluster_channels, layer_weighted_map, top_channel_image

__all__ = [
    "B2NConfig",
    "HierarchyCorrelation",
    "NetworkMaps",
    "TokenStats",
    "bottleneck_maps",
    "channel_labels",
    "expected_layer",
    "hierarchy_correlation",
    "network_maps",
    "planted_checks",
    "roi_top_channel_images",
    "standardize_tokens",
    "train_factortopy",
]


# --------------------------------------------------------------------------- maps


@dataclass(frozen=True)
class NetworkMaps:
    """Per-vertex selector outputs of a FactorTopy model for one subject.

    Attributes
    ----------
    layer_weights : float32 (V, L), rows sum to 1.
    xy : float32 (V, 2), image position, x right / y down in [-1, 1].
    scale : float32 (V,), 0 local .. 1 global.
    readout : float32 (V, D), readout weight vectors.
    layer_names : the L layer names.
    """

    layer_weights: np.ndarray
    xy: np.ndarray
    scale: np.ndarray
    readout: np.ndarray
    layer_names: tuple[str, ...]

    @property
    def expected_layer(self) -> np.ndarray:
        """float64 (V,): ``sum_l l * w_l`` (0 = first layer)."""
        return expected_layer(self.layer_weights)

    @property
    def preferred_layer(self) -> np.ndarray:
        """int64 (V,): argmax layer."""
        return np.argmax(self.layer_weights, axis=1)


def network_maps(model, subject: str) -> NetworkMaps:
    """Selector outputs and readout weights of ``model`` (a FactorTopy) for ``subject``."""
    for attr in ("layer_weights", "positions", "scale", "readouts"):
        if not hasattr(model, attr):
            raise TypeError(f"model must be a FactorTopy-like model with .{attr}, got {type(model).__name__}")
    readout_module = model.readouts[subject]  # KeyError naming the known subjects
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            lw = model.layer_weights(subject).float().cpu().numpy()
            xy = model.positions(subject).float().cpu().numpy()
            sc = model.scale(subject).float().cpu().numpy()
            readout = readout_module.weight.detach().float().cpu().numpy()
    finally:
        model.train(was_training)
    names = tuple(model.config.layer_names) or tuple(str(i) for i in range(lw.shape[1]))
    return NetworkMaps(lw, xy, sc, readout, names)


def expected_layer(layer_weights: np.ndarray) -> np.ndarray:
    """``sum_l l * w[v, l]`` of layer weights (V, L) -> float64 (V,), layers numbered 0..L-1."""
    w = np.asarray(layer_weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] < 1:
        raise ValueError(f"layer_weights must have shape (V, L), got {w.shape}")
    return w @ np.arange(w.shape[1], dtype=np.float64)


@dataclass(frozen=True)
class HierarchyCorrelation:
    """Spearman rank correlation between a hierarchy and the expected preferred layer."""

    rho: float
    p_value: float
    n: int


def hierarchy_correlation(layer_weights: np.ndarray, hierarchy: np.ndarray,
                          mask: np.ndarray | None = None) -> HierarchyCorrelation:
    """Spearman rho between ``hierarchy`` (V,) and :func:`expected_layer` over ``mask`` (V,) bool.

    Raises ``ValueError`` with fewer than 3 vertices or a constant input.
    """
    el = expected_layer(layer_weights)
    h = np.asarray(hierarchy, dtype=np.float64)
    if h.shape != el.shape:
        raise ValueError(f"hierarchy must have shape {el.shape}, got {h.shape}")
    m = np.ones(len(h), bool) if mask is None else np.asarray(mask, bool)
    if m.shape != h.shape:
        raise ValueError(f"mask must have shape {h.shape}, got {m.shape}")
    m = m & np.isfinite(h)
    if m.sum() < 3:
        raise ValueError(f"need at least 3 vertices, got {int(m.sum())}")
    if np.ptp(h[m]) == 0 or np.ptp(el[m]) == 0:
        raise ValueError("hierarchy or expected layer is constant over the selected vertices")
    res = stats.spearmanr(h[m], el[m])
    return HierarchyCorrelation(float(res.statistic), float(res.pvalue), int(m.sum()))


def channel_labels(maps: NetworkMaps | np.ndarray, n_clusters: int = 20, n_kmeans: int = 1000, seed: int = 0,
                   mask: np.ndarray | None = None) -> np.ndarray:
    """Channel per vertex from the readout weights (:func:`~brainnet.analysis.channels.cluster_channels`).

    ``mask`` (V,) bool restricts the clustering to some vertices (others get -1). Returns
    int64 (V,), 0 = the largest channel.
    """
    w = maps.readout if isinstance(maps, NetworkMaps) else np.asarray(maps)
    m = np.ones(len(w), bool) if mask is None else np.asarray(mask, bool)
    labels = np.full(len(w), -1, dtype=np.int64)
    labels[m] = cluster_channels(w[m], n_clusters=n_clusters, n_kmeans=min(n_kmeans, int(m.sum())), seed=seed)
    return labels


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class TokenStats:
    """Per-channel mean / sd of cached tokens (layer -> float32 (C,)), for :func:`standardize_tokens`."""

    local_mean: dict
    local_std: dict
    global_mean: dict
    global_std: dict

    def apply(self, local: Mapping, glob: Mapping) -> tuple[dict, dict]:
        """Standardise token dicts (layer -> (B, C, h, w) / (B, C) arrays or tensors); float32 tensors."""
        out_l, out_g = {}, {}
        for name, x in local.items():
            x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).float()
            m, s = (torch.from_numpy(a[name]).view(1, -1, 1, 1) for a in (self.local_mean, self.local_std))
            out_l[name] = (x - m) / s
        for name, x in glob.items():
            x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).float()
            out_g[name] = (x - torch.from_numpy(self.global_mean[name])) / torch.from_numpy(self.global_std[name])
        return out_l, out_g


def standardize_tokens(features):
    """z-score every channel of a :class:`~brainnet.training.batches.FeatureSet`'s tokens.

    Local maps are standardised over images and positions, global tokens over images (sd floor
    1e-6). Returns ``(new FeatureSet (fp16 tokens), TokenStats)``; the memory vectors are kept.
    """
    local, glob = {}, {}
    lm, ls, gm, gs = {}, {}, {}, {}
    for name, a in features.local.items():
        x = np.asarray(a, dtype=np.float32)
        lm[name] = x.mean(axis=(0, 2, 3)).astype(np.float32)
        ls[name] = np.maximum(x.std(axis=(0, 2, 3)), 1e-6).astype(np.float32)
        local[name] = ((x - lm[name][None, :, None, None]) / ls[name][None, :, None, None]).astype(np.float16)
    for name, a in features.global_.items():
        x = np.asarray(a, dtype=np.float32)
        gm[name] = x.mean(axis=0).astype(np.float32)
        gs[name] = np.maximum(x.std(axis=0), 1e-6).astype(np.float32)
        glob[name] = ((x - gm[name]) / gs[name]).astype(np.float16)
    new = replace(features, local=local, global_=glob)
    return new, TokenStats(lm, ls, gm, gs)


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


def roi_top_channel_images(model, maps: NetworkMaps, local: Mapping, labels: np.ndarray, names: Sequence[str],
                           rois: Sequence[str], n_components: int = 3) -> dict[str, np.ndarray]:
    """Top channels of each named ROI on one image: ROI-mean layer weights mix the bottleneck
    maps (:func:`bottleneck_maps`), then the PCA of the ROI's readout weights colours them
    (:func:`~brainnet.analysis.channels.top_channel_image`).

    Parameters
    ----------
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
        out[roi] = top_channel_image(maps.readout[sel], fmap, n_components=n_components)
    return out


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class B2NConfig:
    """A small FactorTopy training run (notebook scale; see :func:`train_factortopy`).

    Attributes
    ----------
    epochs, max_steps : Trainer limits (-1: no step limit).
    vertices_per_step : random vertices per step (the selectors are shared MLPs over the sphere,
        so a subset per step trains them; None: all).
    lr, batch_size, beta : optimisation (AdamW, smooth L1 with ``beta``).
    bottleneck, mlp_hidden, reg_decay_steps : FactorTopy options.
    readout_init_std : std of the readout weights at init. Small (0.05) so that after a short run
        the readout directions are the learned ones, not the random start: the channel map
        clusters those directions (with std 1 and a few hundred steps it is salt-and-pepper).
    pool : cached local maps pooled to ``pool x pool``.
    standardize : z-score tokens per channel (:func:`standardize_tokens`).
    seed : run seed.
    model_options : more FactorTopyConfig overrides.
    """

    epochs: int = 6
    max_steps: int = -1
    vertices_per_step: int | None = 512
    lr: float = 2e-3
    batch_size: int = 32
    beta: float = 0.1
    bottleneck: int = 32
    mlp_hidden: int = 64
    reg_decay_steps: int = 100
    readout_init_std: float = 0.05
    pool: int = 8
    standardize: bool = True
    seed: int = 0
    model_options: dict = field(default_factory=dict)


def train_factortopy(data_dir: str | Path, subject: str, backbone: str, out_dir: str | Path,
                     config: B2NConfig | None = None, features=None):
    """Train FactorTopy for one subject on one backbone's cached tokens.

    Parameters
    ----------
    features : a :class:`~brainnet.training.batches.FeatureSet` of that backbone (None: built,
        and standardised when ``config.standardize``); pass the one already built to reuse it.

    Returns
    -------
    (FitResult, FeatureSet used, TokenStats or None)
    """
    from brainnet.training.config import TrainConfig
    from brainnet.training.features import build_features
    from brainnet.training.fit import fit_encoder

    config = config or B2NConfig()
    stats_ = None
    if features is None:
        features = build_features(data_dir, backbone, pool=config.pool)
        if config.standardize:
            features, stats_ = standardize_tokens(features)
    opts = dict(bottleneck=config.bottleneck, mlp_hidden=config.mlp_hidden, reg_decay_steps=config.reg_decay_steps,
                readout_init_std=config.readout_init_std, chunk_size=None)
    opts.update(config.model_options)
    tc = TrainConfig(data_dir=str(data_dir), subjects=(subject,), backbone=backbone, pool=config.pool,
                     model="factortopy", max_epochs=config.epochs, max_steps=config.max_steps, patience=None,
                     vertices_per_step=config.vertices_per_step, lr=config.lr, batch_size=config.batch_size,
                     beta=config.beta, weight_decay=0.0, out_dir=str(out_dir), resume=False, seed=config.seed,
                     eval_split="test", model_options=opts)
    return fit_encoder(tc, features=features), features, stats_


# --------------------------------------------------------------------------- planted truth


def planted_checks(maps: NetworkMaps, truth: pd.DataFrame, max_early_hierarchy: float = 0.35) -> dict[str, float]:
    """Compare a model's maps with nsd-mini's planted truth (:func:`brainnet.analysis.truth.vertex_truth`).

    Returns
    -------
    dict: ``hierarchy_rho`` / ``hierarchy_p`` / ``n_visual`` — Spearman rho between planted
    hierarchy and expected layer over the planted visual vertices; ``rf_r_x`` / ``rf_r_y`` /
    ``n_early`` — Pearson r between positions and planted RF centres on early visual vertices
    (visual, hierarchy <= ``max_early_hierarchy``); ``rf_r_x_visual`` / ``rf_r_y_visual`` — the
    same over all visual vertices.
    """
    from brainnet.analysis.truth import KIND_VISUAL, position_recovery

    if len(truth) != len(maps.scale):
        raise ValueError(f"truth has {len(truth)} vertices, maps {len(maps.scale)}")
    visual = truth["kind"].to_numpy() == KIND_VISUAL
    early = visual & (truth["hierarchy"].to_numpy() <= max_early_hierarchy)
    h = hierarchy_correlation(maps.layer_weights, truth["hierarchy"].to_numpy(), visual)
    rf = position_recovery(maps.xy, truth, early)
    rf_all = position_recovery(maps.xy, truth, visual)
    return {"hierarchy_rho": h.rho, "hierarchy_p": h.p_value, "n_visual": h.n,
            "rf_r_x": rf["r_x"], "rf_r_y": rf["r_y"], "n_early": rf["n"],
            "rf_r_x_visual": rf_all["r_x"], "rf_r_y_visual": rf_all["r_y"]}
