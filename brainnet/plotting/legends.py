"""Legends drawn in the band that :func:`~brainnet.plotting.draw.draw_brain` leaves at the bottom.

Each function takes the brain Axes and the band height (fraction of the Axes height) and adds
an inset Axes inside that band; it returns the inset Axes.
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator

from brainnet.plotting import colors as C

FONT = 8


def add_colorbar(ax, cmap, vmin: float, vmax: float, band: float, *, label: str | None = None, ticks=None,
                 ticklabels=None):
    """Horizontal colorbar centred in the legend band."""
    cax = ax.inset_axes([0.32, band * 0.62, 0.36, band * 0.14])
    cmap = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    cb = ax.figure.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), cax=cax, orientation="horizontal")
    if ticks is None:
        cb.ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    else:
        cb.set_ticks(ticks)
        if ticklabels is not None:
            cb.set_ticklabels(ticklabels)
    cb.ax.tick_params(labelsize=FONT, length=2)
    if label:
        cb.set_label(label, fontsize=FONT)
    return cax


def add_layer_legend(ax, n_layers: int, band: float, *, layer_names=None, cmap=C.LAYER_CMAP, max_entropy: float = 1.0):
    """2-D legend of the layer map: x = preferred layer (early..late), y = normalised entropy."""
    img = C.layer_legend_image(n_layers, 64, cmap=cmap, max_entropy=max_entropy)
    cax = ax.inset_axes([0.38, band * 0.28, 0.24, band * 0.62])
    cax.imshow(img, aspect="auto", extent=(-0.5, n_layers - 0.5, max_entropy, 0.0), interpolation="nearest")
    names = list(layer_names) if layer_names is not None else [str(i) for i in range(n_layers)]
    if len(names) != n_layers:
        raise ValueError(f"{len(names)} layer names for {n_layers} layers")
    step = max(1, int(np.ceil(n_layers / 8)))
    cax.set_xticks(np.arange(0, n_layers, step))
    cax.set_xticklabels(names[::step], fontsize=FONT - 1)
    cax.set_yticks([0.0, max_entropy])
    cax.set_yticklabels(["0", f"{max_entropy:g}"], fontsize=FONT - 1)
    cax.set_xlabel("preferred layer (early \u2192 late)", fontsize=FONT, labelpad=1)
    cax.set_ylabel("entropy", fontsize=FONT, labelpad=1)
    cax.tick_params(length=2, pad=1)
    return cax


def add_space_legend(ax, band: float, *, xy=None, max_points: int = 600, seed: int = 0):
    """The colour square of the space map; optionally the vertices' points on it (black dots)."""
    cax = ax.inset_axes([0.35, band * 0.26, 0.30, band * 0.70])
    cax.imshow(C.space_legend_image(128), extent=(-1, 1, 1, -1), interpolation="bilinear")
    if xy is not None and len(xy):
        pts = np.asarray(xy)
        if pts.shape[0] > max_points:
            pts = pts[np.random.default_rng(seed).choice(pts.shape[0], max_points, replace=False)]
        cax.scatter(pts[:, 0], pts[:, 1], s=0.4, c="black", alpha=0.3, linewidths=0)
    cax.set_xlim(-1, 1)
    cax.set_ylim(1, -1)
    cax.set_xticks([-1, 0, 1])
    cax.set_yticks([-1, 0, 1])
    cax.tick_params(labelsize=FONT - 1, length=2, pad=1)
    cax.set_xlabel("image x", fontsize=FONT, labelpad=1)
    cax.set_ylabel("image y", fontsize=FONT, labelpad=1)
    return cax


def add_channel_legend(ax, ids, band: float, *, cmap=C.CHANNEL_CMAP, names=None):
    """A row of swatches, one per channel id present; with ``names``, a legend of named patches
    in columns (readable for many ROIs)."""
    ids = np.unique(np.asarray(ids))
    cols = C.channel_colors(ids, cmap=cmap)
    if names is not None:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor=c, edgecolor="none", label=str(names[i])) for i, c in zip(ids, cols)]
        ncol = int(min(len(handles), 8))
        return ax.legend(handles=handles, loc="center", bbox_to_anchor=(0.5, band * 0.5), ncol=ncol,
                         frameon=False, fontsize=FONT - 1, handlelength=1.0, columnspacing=0.9,
                         handletextpad=0.4, borderaxespad=0.0)
    cax = ax.inset_axes([0.2, band * 0.6, 0.6, band * 0.18])
    cax.imshow(cols[None, :, :], aspect="auto", interpolation="nearest", extent=(-0.5, len(ids) - 0.5, 0, 1))
    cax.set_yticks([])
    step = max(1, int(np.ceil(len(ids) / 25)))
    cax.set_xticks(np.arange(len(ids))[::step])
    cax.set_xticklabels([str(i) for i in ids[::step]], fontsize=FONT - 1)
    cax.tick_params(length=0, pad=1)
    cax.set_xlabel("channel", fontsize=FONT, labelpad=1)
    return cax
