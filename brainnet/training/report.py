"""Tables and figures comparing fitted encoding models and baselines (used by notebook 02)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def _per_vertex(result, subject: str) -> pd.DataFrame:
    """Per-vertex table of a FitResult (``.evaluation[subject]``) or a BaselineResult."""
    if hasattr(result, "evaluation") and isinstance(result.evaluation, dict):
        return result.evaluation[subject].per_vertex
    return result.evaluation.per_vertex


def roi_score_table(results: Mapping[str, object], subject: str, atlas: str = "streams") -> pd.DataFrame:
    """Mean noise-normalised score per ROI of ``atlas`` for each named result, plus the mean noise
    ceiling (percent) and vertex count; a final "all vertices" row. Columns: roi, n_vertices,
    noise_ceiling, then one column per result name."""
    rows = None
    for name, res in results.items():
        pv = _per_vertex(res, subject)
        if atlas not in pv:
            raise ValueError(f"atlas {atlas!r} not in the per-vertex table (have {list(pv.columns)})")
        if rows is None:
            rows = pd.DataFrame({"code": pv[atlas], "nc": pv["nc"] * 100})
        rows[name] = pv["score"].to_numpy()
    table = rows[rows["code"] > 0].groupby("code").mean()
    table.insert(0, "n_vertices", rows[rows["code"] > 0].groupby("code").size())
    table = table.rename(columns={"nc": "noise_ceiling"}).reset_index()
    total = rows.drop(columns="code").mean().rename({"nc": "noise_ceiling"})
    total["n_vertices"], total["code"] = len(rows), -1
    table = pd.concat([table, total.to_frame().T], ignore_index=True)
    return table


def name_rois(table: pd.DataFrame, names) -> pd.DataFrame:
    """Replace the ``code`` column by ROI names (``names[code]``; -1 -> "all vertices")."""
    out = table.copy()
    out.insert(0, "roi", [("all vertices" if int(c) < 0 else str(names[int(c)])) for c in out["code"]])
    return out.drop(columns="code")


def ablation_table(fits: Mapping[str, object], subject: str, groups: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One row per ablation: mean r and mean score over all vertices and over each vertex group
    (e.g. planted kinds from :func:`brainnet.analysis.truth.kind_mask`)."""
    rows = []
    for name, fit in fits.items():
        pv = _per_vertex(fit, subject)
        row = {"model": name, "mean_r": float(pv["r"].mean()), "mean_score": float(pv["score"].mean())}
        for g, mask in (groups or {}).items():
            mask = np.asarray(mask, bool)
            if mask.any():
                row[f"{g}_r"] = float(pv["r"].to_numpy()[mask].mean())
                row[f"{g}_score"] = float(pv["score"].to_numpy()[mask].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def plot_learning_curves(histories: Mapping[str, pd.DataFrame], figure=None, output_file=None, title="Learning curves"):
    """Train loss and validation r against step for each named history (from ``FitResult.history``).
    Returns the figure."""
    import matplotlib.pyplot as plt

    fig = figure or plt.figure(figsize=(9, 3.5))
    ax1, ax2 = fig.subplots(1, 2)
    for name, h in histories.items():
        if len(h):
            ax1.plot(h["step"], h["train_loss"], marker="o", ms=3, label=name)
            ax2.plot(h["step"], h["val_r"], marker="o", ms=3, label=name)
    ax1.set(xlabel="step", ylabel="train loss (per epoch)")
    ax2.set(xlabel="step", ylabel="validation mean r")
    ax2.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    if output_file:
        fig.savefig(output_file, dpi=120)
    return fig


def plot_score_bars(table: pd.DataFrame, models, figure=None, output_file=None, title="Score per ROI"):
    """Grouped bars of the per-ROI score of ``models`` (columns of a :func:`name_rois` table), with the
    noise ceiling as a line. Returns the figure."""
    import matplotlib.pyplot as plt

    fig = figure or plt.figure(figsize=(max(7, 1.0 * len(table) + 2.5), 3.8))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(table))
    width = 0.8 / max(1, len(models))
    for k, m in enumerate(models):
        ax.bar(x + (k - (len(models) - 1) / 2) * width, table[m].astype(float), width, label=m)
    ax.plot(x, table["noise_ceiling"].astype(float), "k_", ms=18, mew=2, label="noise ceiling (%)")
    ax.set_xticks(x, table["roi"], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="noise-normalised score", title=title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    if output_file:
        fig.savefig(output_file, dpi=120)
    return fig


def plot_positions(positions: np.ndarray, rf_x: np.ndarray, rf_y: np.ndarray, mask: np.ndarray | None = None,
                   figure=None, output_file=None, title="Retina positions vs planted RF centres"):
    """Scatter learned positions (V, 2) against planted RF centres (x and y panels). Returns the figure."""
    import matplotlib.pyplot as plt

    pos = np.asarray(positions)
    m = np.ones(len(pos), bool) if mask is None else np.asarray(mask, bool)
    fig = figure or plt.figure(figsize=(7, 3.4))
    axes = fig.subplots(1, 2)
    for ax, truth, k, lab in ((axes[0], rf_x, 0, "x"), (axes[1], rf_y, 1, "y")):
        r = np.corrcoef(pos[m, k], np.asarray(truth)[m])[0, 1] if m.sum() > 2 else np.nan
        ax.scatter(np.asarray(truth)[m], pos[m, k], s=4, alpha=0.5)
        ax.set(xlabel=f"planted RF {lab}", ylabel=f"learned {lab}", title=f"r = {r:.3f}")
    fig.suptitle(title)
    fig.tight_layout()
    if output_file:
        fig.savefig(output_file, dpi=120)
    return fig
