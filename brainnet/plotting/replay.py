"""Memory-replay figures (notebook 03): lag profiles, peak bootstrap, maps per lag, planted vs recovered.

Every function takes the results of :mod:`brainnet.analysis.replay_results` and returns the
matplotlib Figure; none of them computes a score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_lag_profiles", "plot_peak_bootstrap", "plot_planted_vs_recovered", "plot_region_lag_profiles",
           "plot_replay_maps"]


def plot_lag_profiles(result, groups: Mapping[str, Sequence[str]], focus: str | None = None) -> Figure:
    """Mean r against lag per vertex group, one panel per subject (solid: real, dashed: control).

    Parameters
    ----------
    result : :class:`~brainnet.analysis.replay_results.ReplayResult`.
    groups : subject -> group names (e.g. the dict of :func:`~brainnet.analysis.replay_results.vertex_groups`).
    focus : group drawn thicker (e.g. ``"planted memory"``).
    """
    subjects = list(result.subjects)
    fig, axes = plt.subplots(1, len(subjects), figsize=(6.5 * len(subjects), 4.2), squeeze=False)
    for ax, subject in zip(axes[0], subjects):
        sr = result[subject]
        names = list(groups[subject])
        colours = plt.cm.tab10(np.arange(len(names) + 1) % 10)
        ax.plot(sr.lags, sr.group_profile("all"), color="black", lw=2, label="all vertices")
        ax.plot(sr.lags, sr.group_profile("all", control=True), color="black", lw=1, ls="--")
        for name, colour in zip(names, colours):
            ax.plot(sr.lags, sr.group_profile(name), color=colour, lw=2.5 if name == focus else 1.2, label=name)
            ax.plot(sr.lags, sr.group_profile(name, control=True), color=colour, lw=0.8, ls="--")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set(xlabel="lag k (image shown k slots before)", ylabel="mean r (held-out trials)", title=subject)
        ax.set_xticks(sr.lags[:: max(1, len(sr.lags) // 16)])
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                       title="solid: real\ndashed: control")
    fig.tight_layout()
    return fig


def plot_region_lag_profiles(result, panels: Mapping[str, Mapping[str, Sequence[str]]],
                             marks: Mapping[str, float] | None = None, focus: Sequence[str] = ()) -> Figure:
    """Lag profiles of groups of units side by side: one row per subject, one column per panel
    (e.g. cortex ROIs | hippocampal and thalamic voxel groups), rows sharing their y axis; each
    column's legend under its last row.

    Parameters
    ----------
    result : :class:`~brainnet.analysis.replay_results.ReplayResult` whose grid kept the groups.
    panels : panel title -> subject -> group names (solid: real models, dashed: control).
    marks : label -> lag, drawn as dotted vertical lines in every panel (e.g. the planted peaks).
    focus : groups drawn thicker (e.g. ``("planted memory", "H")``).
    """
    subjects, titles = list(result.subjects), list(panels)
    fig, axes = plt.subplots(len(subjects), len(titles), figsize=(5.6 * len(titles), 3.2 * len(subjects) + 1.2),
                             squeeze=False, sharey="row")
    mark_colours = plt.cm.Dark2(np.arange(max(1, len(marks or {}))) % 8)
    for row, subject in zip(axes, subjects):
        sr = result[subject]
        for ax, title in zip(row, titles):
            names = list(panels[title].get(subject, ()))
            cmap = plt.cm.tab10 if len(names) <= 10 else plt.cm.tab20
            colours = cmap(np.arange(max(1, len(names))) % cmap.N)
            for name, colour in zip(names, colours):
                ax.plot(sr.lags, sr.group_profile(name), color=colour, lw=3.0 if name in focus else 1.4, label=name,
                        zorder=1 if name in focus else 2)
                ax.plot(sr.lags, sr.group_profile(name, control=True), color=colour, lw=0.8, ls="--")
            for (label, lag), colour in zip((marks or {}).items(), mark_colours):
                ax.axvline(lag, color=colour, lw=1.2, ls=":", label=f"{label} ({lag:g})")
            ax.axhline(0, color="grey", lw=0.5)
            ax.set(xlabel="lag k (image shown k slots before)", title=f"{subject}: {title}")
            ax.set_xticks(sr.lags[:: max(1, len(sr.lags) // 16)])
        row[0].set_ylabel("mean r (held-out trials)")
    for ax in axes[-1]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=7, frameon=False,
                  title="solid: real, dashed: shuffled control", title_fontsize=7)
    fig.tight_layout()
    return fig


def plot_peak_bootstrap(peaks: Mapping, window: tuple[float, float], bin_width: float = 0.25) -> Figure:
    """Histogram of the bootstrap peak lags per subject, with the peak and its CI.

    ``peaks`` : subject -> (group, :class:`~brainnet.analysis.replay_peak.PeakEstimate`)
    (:func:`~brainnet.analysis.replay_results.peak_estimates`); ``window`` : the lags searched.
    """
    fig, axes = plt.subplots(1, len(peaks), figsize=(5.5 * len(peaks), 3.4), squeeze=False)
    for ax, (subject, (group, est)) in zip(axes[0], peaks.items()):
        ax.hist(est.boot_peaks, bins=np.arange(window[0], window[1] + bin_width, bin_width), color="tab:blue",
                alpha=0.8)
        ax.axvline(est.peak, color="black", lw=2, label=f"peak {est.peak:.2f}")
        ax.axvspan(*est.peak_ci, color="grey", alpha=0.25, label="95% CI")
        ax.set(xlabel="peak lag", ylabel="bootstrap resamples", title=f"{subject}: {group}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_replay_maps(sr, dataset, map_lags: Sequence[int], peak_lag: int | None = None, view: str = "occipital",
                     vmax: float = 0.3, ncols: int = 3) -> Figure:
    """Per-vertex r of the real lag models at ``map_lags`` (those in the grid), and of the control
    at ``peak_lag``, on the prepared dataset's surface.

    Parameters
    ----------
    sr : :class:`~brainnet.analysis.replay_results.SubjectReplay`.
    dataset : the :class:`~brainnet.data.PreparedDataset` (vertex positions and meshes).
    vmax : colour limit (symmetric) of lags > 0; lag 0 uses its own 99th percentile.
    """
    from brainnet.plotting.maps import plot_scalar_map

    lags = [int(k) for k in sr.lags]
    panels = [(int(k), False) for k in map_lags if int(k) in lags]
    if peak_lag is not None and int(peak_lag) in lags:
        panels.append((int(peak_lag), True))
    if not panels:
        raise ValueError(f"none of the lags {list(map_lags)} (or the peak {peak_lag}) is in the grid's lags {lags}")
    vert = dataset.subject(sr.subject).vertices
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 4.6 * nrows), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    for ax, (k, ctrl) in zip(axes.ravel(), panels):
        lim = vmax if k else float(np.percentile(sr.lag_map(0), 99))
        plot_scalar_map(sr.lag_map(k, ctrl), vert["hemi"], vert["index"], mesh=dataset, view=view, axes=ax,
                        vmin=-lim, vmax=lim, cmap="RdBu_r", label="r",
                        title=f"{sr.subject}, lag {k}" + (" (control)" if ctrl else ""))
    return fig


def plot_planted_vs_recovered(sr, planted: np.ndarray, planted_peak: int, recovered_peak: float,
                              group: str = "planted memory") -> Figure:
    """nsd-mini: planted |weight| of the image k slots back (bars) and the recovered mean r of
    ``group`` (real and control) against lag."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ks = np.arange(len(planted))
    ax.bar(ks, np.abs(planted), color="lightgrey", label="planted |weight| of the image k slots back")
    ax.set(xlabel="lag k", ylabel="planted |weight|", xlim=(-0.6, max(sr.lags) + 0.6))
    ax2 = ax.twinx()
    ax2.plot(sr.lags, sr.group_profile(group), "o-", color="tab:red", label=f"recovered mean r ({group} vertices)")
    ax2.plot(sr.lags, sr.group_profile(group, control=True), "x--", color="tab:blue", label="control")
    ax2.set_ylabel("mean r")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper right")
    ax.set_title(f"{sr.subject}: planted peak {planted_peak}, recovered {recovered_peak:.2f}")
    fig.tight_layout()
    return fig
