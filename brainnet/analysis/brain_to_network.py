"""Brain to network: read a trained FactorTopy's selectors as maps of a backbone on cortex.

A FactorTopy model (:class:`brainnet.models.FactorTopy`) chooses, per vertex, a backbone layer
(softmax weights), an image position (x, y) and a local / global mix, then reads the
bottleneck feature out with its own weight vector. This module turns a trained model into
those maps and the derived numbers of the Brain Decodes Deep Nets figures (the figures
themselves are in :mod:`brainnet.plotting.network`):

* :func:`network_maps` — layer weights, positions, scale and readout weights per vertex;
* :func:`expected_layer` / :func:`hierarchy_correlation` / :func:`hierarchy_profile` — the
  preferred layer ``sum_l l w_l``, its Spearman correlation with a hierarchy (nsd-mini's
  planted one) and its mean per hierarchy bin;
* :func:`channel_labels` — the channel map (:mod:`brainnet.analysis.channels`);
* :func:`network_features` / :func:`standardize_tokens` / :func:`image_tokens` — a backbone's
  cached tokens z-scored per channel, so backbones whose activation scale differs between
  layers (an untrained CNN's shrinks ~2.6x per stage) are compared on an equal footing, and one
  image's tokens standardised the same way;
* :func:`network_train_config` — the notebook-scale FactorTopy run as a
  :class:`~brainnet.training.config.TrainConfig` (train it with
  :func:`brainnet.training.fit.fit_encoder`, the one training path);
* :func:`planted_checks` / :func:`run_summary` / :func:`trained_clearer` — layer hierarchy and
  RF recovery against nsd-mini's planted truth, one summary row per backbone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
import torch
from scipy import stats

from brainnet.analysis.channels import cluster_channels
from brainnet.data.layout import subject_name
from brainnet.data.prepared import PreparedDataset
from brainnet.training.config import TrainConfig

__all__ = [
    "NETWORK_MODEL_OPTIONS",
    "NETWORK_TRAINING",
    "HierarchyCorrelation",
    "NetworkMaps",
    "TokenStats",
    "channel_labels",
    "expected_layer",
    "hierarchy_correlation",
    "hierarchy_profile",
    "image_tokens",
    "network_features",
    "network_maps",
    "network_train_config",
    "planted_checks",
    "run_summary",
    "standardize_tokens",
    "trained_clearer",
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


def hierarchy_profile(values: np.ndarray, hierarchy: np.ndarray, mask: np.ndarray | None = None,
                      n_bins: int = 10, value_range: tuple[float, float] = (0.0, 1.0)) -> pd.DataFrame:
    """Mean of ``values`` (V,) (e.g. :func:`expected_layer`) in equal bins of ``hierarchy`` (V,).

    ``n_bins`` bins split ``value_range``; a hierarchy outside it falls in the first / last bin.
    ``mask`` (V,) bool selects vertices (non-finite hierarchies are left out too).

    Returns
    -------
    DataFrame with one row per bin: ``centre``, ``mean`` (NaN for an empty bin), ``n``.
    """
    v = np.asarray(values, dtype=np.float64)
    h = np.asarray(hierarchy, dtype=np.float64)
    if v.ndim != 1 or h.shape != v.shape:
        raise ValueError(f"values and hierarchy must both have shape (V,), got {v.shape} and {h.shape}")
    m = np.ones(len(h), bool) if mask is None else np.asarray(mask, bool)
    if m.shape != h.shape:
        raise ValueError(f"mask must have shape {h.shape}, got {m.shape}")
    if n_bins < 1 or not value_range[0] < value_range[1]:
        raise ValueError(f"need n_bins >= 1 and low < high, got {n_bins} and {value_range}")
    m = m & np.isfinite(h)
    edges = np.linspace(value_range[0], value_range[1], n_bins + 1)
    idx = np.clip(np.digitize(h[m], edges) - 1, 0, n_bins - 1)
    n = np.bincount(idx, minlength=n_bins)
    sums = np.bincount(idx, weights=v[m], minlength=n_bins)
    mean = np.divide(sums, n, out=np.full(n_bins, np.nan), where=n > 0)
    return pd.DataFrame({"centre": (edges[:-1] + edges[1:]) / 2, "mean": mean, "n": n})


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


def _root(data: str | Path | PreparedDataset) -> Path:
    return data.root if isinstance(data, PreparedDataset) else Path(data)


def network_features(data, backbone, pool: int | None = 8, standardize: bool = True):
    """A backbone's cached tokens of every image (:func:`brainnet.training.features.build_features`),
    z-scored per channel when ``standardize`` (:func:`standardize_tokens`).

    Parameters
    ----------
    data : prepared dataset (path or :class:`~brainnet.data.PreparedDataset`).
    backbone : registered name or a Backbone object (pass the object to reuse it for
        :func:`image_tokens`).

    Returns
    -------
    (FeatureSet, TokenStats or None)
    """
    from brainnet.training.features import build_features

    features = build_features(_root(data), backbone, pool=pool)
    if not standardize:
        return features, None
    return standardize_tokens(features)


def image_tokens(backbone, image: np.ndarray, token_stats: TokenStats | None = None) -> tuple[dict, dict]:
    """Unpooled tokens of one image, standardised like the training tokens when ``token_stats`` is given.

    Parameters
    ----------
    backbone : a Backbone (``get_tokens``); run in eval mode, its mode is restored.
    image : uint8 (S, S, 3), e.g. a row of :attr:`PreparedDataset.images`.

    Returns
    -------
    (local, global): layer -> float32 tensors (1, C, h, w) / (1, C).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (S, S, 3), got {image.shape}")
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255.0
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            local, glob = backbone.get_tokens(pixels)
    finally:
        backbone.train(was_training)
    if token_stats is not None:
        return token_stats.apply(local, glob)
    return ({k: v.float() for k, v in local.items()}, {k: v.float() for k, v in glob.items()})


# --------------------------------------------------------------------------- training

#: TrainConfig settings of a notebook-scale FactorTopy run (override any in :func:`network_train_config`).
#: Few epochs, no early stopping, a random vertex subset per step (the selectors are shared MLPs over
#: the sphere, so a subset per step trains them), smooth L1 with beta 0.1, no weight decay.
NETWORK_TRAINING = MappingProxyType({
    "model": "factortopy", "pool": 8, "max_epochs": 6, "max_steps": -1, "patience": None, "vertices_per_step": 512,
    "lr": 2e-3, "batch_size": 32, "beta": 0.1, "weight_decay": 0.0, "resume": False, "seed": 0, "eval_split": "test"})

#: FactorTopyConfig options of that run. ``readout_init_std`` is small (0.05) so that after a short run the
#: readout directions are the learned ones, not the random start: the channel map clusters those directions
#: (with std 1 and a few hundred steps it is salt-and-pepper).
NETWORK_MODEL_OPTIONS = MappingProxyType({
    "bottleneck": 32, "mlp_hidden": 64, "reg_decay_steps": 100, "readout_init_std": 0.05, "chunk_size": None})


def network_train_config(data, subject, backbone: str, out_dir: str | Path, **changes) -> TrainConfig:
    """The :class:`TrainConfig` of FactorTopy for one subject on one backbone, notebook scale.

    :data:`NETWORK_TRAINING` with ``changes`` (TrainConfig fields) on top; ``model_options`` in
    ``changes`` update :data:`NETWORK_MODEL_OPTIONS`. Train it with
    ``brainnet.training.fit.fit_encoder(config, features=network_features(...)[0])``.

    Parameters
    ----------
    data : prepared dataset (path or :class:`~brainnet.data.PreparedDataset`); subject : "subj01" or 1.
    """
    options = {**NETWORK_MODEL_OPTIONS, **dict(changes.pop("model_options", None) or {})}
    settings = {**NETWORK_TRAINING, **changes}
    return TrainConfig(data_dir=str(_root(data)), subjects=(subject_name(subject),),
                       backbone=backbone, out_dir=str(out_dir), model_options=options, **settings)


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


def run_summary(fit, maps: NetworkMaps | None = None, truth: pd.DataFrame | None = None,
                seconds: float | None = None) -> dict[str, float | None]:
    """One row of numbers of a trained backbone: ``best_val_r``, ``test_mean_r`` (None when not
    scored), ``steps``, ``train_seconds`` (when given) and, with ``maps`` and ``truth``,
    :func:`planted_checks`. ``fit`` is a :class:`~brainnet.training.fit.FitResult`. Numbers are floats."""
    row: dict = {"best_val_r": fit.summary["best_val_r"], "test_mean_r": fit.summary.get("eval_mean_r"),
                 "steps": fit.global_step}
    if seconds is not None:
        row["train_seconds"] = round(float(seconds), 1)
    if maps is not None and truth is not None:
        row.update(planted_checks(maps, truth))
    return {k: (None if v is None else float(v)) for k, v in row.items()}


def trained_clearer(rows: Mapping[str, Mapping], trained: str = "brainnet-tiny",
                    untrained: str = "brainnet-tiny-random") -> bool | None:
    """Whether ``rows[trained]`` has a higher ``hierarchy_rho`` than ``rows[untrained]`` (rows of
    :func:`run_summary`); None when either backbone or its hierarchy rho is missing."""
    a, b = rows.get(trained, {}), rows.get(untrained, {})
    if a.get("hierarchy_rho") is None or b.get("hierarchy_rho") is None:
        return None
    return bool(a["hierarchy_rho"] > b["hierarchy_rho"])
