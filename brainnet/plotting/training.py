"""Figures of fitted encoding models: learning curves, score per ROI, learned retina positions.

Each function returns a matplotlib Figure (not registered with pyplot: a notebook shows it as a
cell's last expression) and saves it when ``output_file`` is given. The tables these figures draw
come from :mod:`brainnet.training.report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from brainnet.plotting.render import save_figure

TRAINING_DPI = 120


def plot_learning_curves(histories: Mapping[str, pd.DataFrame], *, figure: Figure | None = None,
                         output_file=None, title: str = "Learning curves") -> Figure:
    """Train loss and validation mean r against step, one line per named history.

    Parameters
    ----------
    histories : name -> DataFrame with columns step, train_loss, val_r (``FitResult.history``);
        empty histories are skipped.
    figure : a Figure to draw into (default: a new 9 x 3.5 inch one).
    """
    fig = figure if figure is not None else Figure(figsize=(9, 3.5))
    loss_ax, r_ax = fig.subplots(1, 2)
    for name, h in histories.items():
        if len(h):
            loss_ax.plot(h["step"], h["train_loss"], marker="o", ms=3, label=name)
            r_ax.plot(h["step"], h["val_r"], marker="o", ms=3, label=name)
    loss_ax.set(xlabel="step", ylabel="train loss (per epoch)")
    r_ax.set(xlabel="step", ylabel="validation mean r")
    if any(len(h) for h in histories.values()):
        r_ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, output_file, dpi=TRAINING_DPI)
    return fig


def plot_score_bars(table: pd.DataFrame, models: Sequence[str], *, figure: Figure | None = None,
                    output_file=None, title: str = "Score per ROI") -> Figure:
    """Grouped bars of each model's noise-normalised score per ROI, the noise ceiling as a tick (or of
    each model's Pearson r, without a tick, for a table of a dataset without a noise ceiling).

    Parameters
    ----------
    table : one row per ROI with columns roi, noise_ceiling (percent; absent without a noise ceiling)
        and one score column per name in ``models`` (:func:`brainnet.training.report.name_rois` of a
        :func:`~brainnet.training.report.roi_score_table`; its ``attrs["score"]`` "r" labels the axis r).
    models : the score columns to draw, in this order.
    """
    has_nc = table.attrs.get("score", "score") == "score"
    missing = [c for c in ("roi", *(("noise_ceiling",) if has_nc else ()), *models) if c not in table]
    if missing:
        raise ValueError(f"table lacks columns {missing} (have {list(table.columns)})")
    fig = figure if figure is not None else Figure(figsize=(max(7, 1.0 * len(table) + 2.5), 3.8))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(table))
    width = 0.8 / max(1, len(models))
    for k, m in enumerate(models):
        ax.bar(x + (k - (len(models) - 1) / 2) * width, table[m].astype(float), width, label=m)
    if has_nc:
        ax.plot(x, table["noise_ceiling"].astype(float), "k_", ms=18, mew=2, label="noise ceiling (%)")
    ax.set_xticks(x, table["roi"], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="noise-normalised score" if has_nc else "Pearson r (no noise ceiling)", title=title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    save_figure(fig, output_file, dpi=TRAINING_DPI)
    return fig


def plot_positions(positions, rf_x, rf_y, mask=None, *, r: tuple[float, float] | None = None,
                   figure: Figure | None = None, output_file=None,
                   title: str = "Retina positions vs planted RF centres") -> Figure:
    """Scatter learned retina positions against planted receptive-field centres (x and y panels).

    Parameters
    ----------
    positions : array of shape (V, 2), learned (x, y) per vertex.
    rf_x, rf_y : arrays of shape (V,), the planted centres.
    mask : bool array of shape (V,), the vertices drawn (default: all).
    r : (r_x, r_y) written above the panels, e.g. from
        :func:`brainnet.analysis.truth.position_recovery` over the same vertices.
    """
    pos = np.asarray(positions)
    truth = np.stack([np.asarray(rf_x), np.asarray(rf_y)], axis=1)
    if pos.ndim != 2 or pos.shape[1] != 2 or truth.shape != pos.shape:
        raise ValueError(f"positions must be (V, 2) and rf_x, rf_y (V,); got {pos.shape} and {truth.shape}")
    m = np.ones(len(pos), bool) if mask is None else np.asarray(mask, bool)
    fig = figure if figure is not None else Figure(figsize=(7, 3.4))
    for k, (ax, axis) in enumerate(zip(fig.subplots(1, 2), "xy")):
        ax.scatter(truth[m, k], pos[m, k], s=4, alpha=0.5)
        ax.set(xlabel=f"planted RF {axis}", ylabel=f"learned {axis}",
               title=f"r = {r[k]:.3f}" if r is not None else axis)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, output_file, dpi=TRAINING_DPI)
    return fig
