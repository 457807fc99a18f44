"""Brain to network: read a trained FactorTopy's selectors as maps of a backbone on cortex.

A FactorTopy model (:class:`brainnet.models.FactorTopy`) chooses, per vertex, a backbone layer
(softmax weights), an image position (x, y) and a local / global mix, then reads the
bottleneck feature out with its own weight vector. This module turns a trained model into
those maps and the derived numbers of the Brain Decodes Deep Nets figures (the figures
themselves are in :mod:`brainnet.plotting.network`; the training run, standardised tokens
included, is set up by :mod:`brainnet.training.network`):

* :func:`network_maps` — layer weights, positions, scale and readout weights per vertex;
* :func:`expected_layer` / :func:`hierarchy_correlation` / :func:`hierarchy_profile` — the
  preferred layer ``sum_l l w_l``, its Spearman correlation with a hierarchy (nsd-mini's
  planted one) and its mean per hierarchy bin;
* :func:`channel_labels` — the channel map (:mod:`brainnet.analysis.channels`);
* :func:`planted_checks` / :func:`run_summary` / :func:`trained_clearer` — layer hierarchy and
  RF recovery against nsd-mini's planted truth, one summary row per backbone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats

from brainnet.analysis.channels import cluster_channels

__all__ = [
    "HierarchyCorrelation",
    "NetworkMaps",
    "channel_labels",
    "expected_layer",
    "hierarchy_correlation",
    "hierarchy_profile",
    "network_maps",
    "planted_checks",
    "run_summary",
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
                   mask: np.ndarray | None = None, method: str = "weights") -> np.ndarray:
    """Channel per vertex from the readout weights (:func:`~brainnet.analysis.channels.cluster_channels`,
    its ``method``: "weights" or BDDN's "kernel").

    ``mask`` (V,) bool restricts the clustering to some vertices (others get -1). Returns
    int64 (V,), 0 = the largest channel.
    """
    w = maps.readout if isinstance(maps, NetworkMaps) else np.asarray(maps)
    m = np.ones(len(w), bool) if mask is None else np.asarray(mask, bool)
    labels = np.full(len(w), -1, dtype=np.int64)
    labels[m] = cluster_channels(w[m], n_clusters=n_clusters, n_kmeans=min(n_kmeans, int(m.sum())), seed=seed,
                                 method=method)
    return labels


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
