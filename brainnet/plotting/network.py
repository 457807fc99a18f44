"""Figures of brain-to-network results (notebook 04; the numbers are in
:mod:`brainnet.analysis.brain_to_network`).

* :func:`plot_top_channels` — one image and, per backbone, each ROI's top-channel picture;
* :func:`plot_layer_vs_hierarchy` — expected preferred layer against a hierarchy, with bin means;
* :func:`plot_backbones_side_by_side` — layer and space maps of every backbone (and the layer vs
  hierarchy panel when a hierarchy is given).

Each returns the matplotlib Figure and saves it to ``output_file`` when given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from brainnet.plotting.maps import plot_layer_map, plot_space_map
from brainnet.plotting.render import save_figure

__all__ = ["plot_backbones_side_by_side", "plot_layer_vs_hierarchy", "plot_top_channels"]


def plot_top_channels(image: np.ndarray, tops: Mapping[str, Mapping[str, np.ndarray]], rois: Sequence[str],
                      roi_sizes: Mapping[str, int] | None = None, output_file=None) -> Figure:
    """One row per backbone: the image, then each ROI's top-channel picture.

    Parameters
    ----------
    image : uint8 or float (H, W, 3), the image the pictures were made from.
    tops : backbone name -> ROI name -> float (h, w, 3) in [0, 1]
        (:func:`brainnet.analysis.channels.roi_top_channel_images`); a missing ROI leaves its panel empty.
    rois : the ROI columns, in order; roi_sizes : ROI name -> vertex count (written in the titles).
    """
    if not tops:
        raise ValueError("tops is empty: no backbone to draw")
    rois = list(rois)
    n_rows, n_cols = len(tops), len(rois) + 1
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols, 2.8 * n_rows), squeeze=False)
    for row, (name, pictures) in zip(axes, tops.items()):
        row[0].imshow(np.asarray(image))
        row[0].set_title("image", fontsize=9)
        row[0].set_ylabel(name, fontsize=9)
        for ax, roi in zip(row[1:], rois):
            if roi in pictures:
                ax.imshow(pictures[roi], interpolation="nearest")
            size = f" ({int(roi_sizes[roi])} vertices)" if roi_sizes and roi in roi_sizes else ""
            ax.set_title(f"{roi}{size}", fontsize=9)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    save_figure(fig, output_file)
    return fig


def plot_layer_vs_hierarchy(hierarchy: np.ndarray, expected: np.ndarray, n_layers: int,
                            profile: pd.DataFrame | None = None, axes: Axes | None = None,
                            title: str = "layer vs hierarchy", output_file=None) -> Figure:
    """Scatter of expected layer (n,) against hierarchy (n,) (0 = first layer), with the bin means of
    ``profile`` (:func:`brainnet.analysis.brain_to_network.hierarchy_profile`: ``centre``, ``mean``)."""
    h, e = np.asarray(hierarchy, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if h.ndim != 1 or h.shape != e.shape:
        raise ValueError(f"hierarchy and expected must both have shape (n,), got {h.shape} and {e.shape}")
    if axes is None:
        fig, axes = plt.subplots(figsize=(6.2, 4.8))
    fig = axes.figure
    axes.scatter(h, e, s=3, alpha=0.25, color="grey", label="visual vertices")
    if profile is not None:
        axes.plot(profile["centre"], profile["mean"], "o-", color="tab:red", label="bin mean")
    axes.set(xlabel="planted hierarchy (0 occipital pole, 1 mask border)", ylabel="expected layer  sum l w_l",
             ylim=(-0.1, n_layers - 0.9), title=title)
    axes.set_yticks(range(n_layers))
    axes.legend(fontsize=8, loc="upper left")
    save_figure(fig, output_file)
    return fig


def plot_backbones_side_by_side(maps: Mapping, hemi: np.ndarray, index: np.ndarray, *, mesh="fsaverage5",
                                view="occipital", rois: np.ndarray | None = None, hierarchy: np.ndarray | None = None,
                                mask: np.ndarray | None = None, profiles: Mapping[str, pd.DataFrame] | None = None,
                                output_file=None) -> Figure:
    """One row per backbone: layer map, space map and, with ``hierarchy``, layer vs hierarchy.

    Parameters
    ----------
    maps : backbone name -> :class:`~brainnet.analysis.brain_to_network.NetworkMaps` (``layer_weights``
        (V, L), ``xy`` (V, 2), ``expected_layer`` (V,), ``layer_names``).
    hemi, index, mesh, view, rois : as in :mod:`brainnet.plotting.maps`.
    hierarchy : float (V,) per vertex; mask : bool (V,) vertices of the scatter (default all);
    profiles : backbone name -> its bin means (:func:`plot_layer_vs_hierarchy`).
    """
    if not maps:
        raise ValueError("maps is empty: no backbone to draw")
    ncols = 3 if hierarchy is not None else 2
    fig, axes = plt.subplots(len(maps), ncols, figsize=(6.2 * ncols, 4.8 * len(maps)), squeeze=False)
    for row, (name, m) in zip(axes, maps.items()):
        plot_layer_map(m.layer_weights, hemi, index, mesh=mesh, view=view, rois=rois, axes=row[0],
                       layer_names=m.layer_names, title=f"{name}: layer")
        plot_space_map(m.xy, hemi, index, mesh=mesh, view=view, rois=rois, axes=row[1], title=f"{name}: space")
        if hierarchy is not None:
            sel = np.ones(len(m.xy), bool) if mask is None else np.asarray(mask, bool)
            plot_layer_vs_hierarchy(np.asarray(hierarchy)[sel], m.expected_layer[sel], len(m.layer_names),
                                    (profiles or {}).get(name), axes=row[2], title=f"{name}: layer vs hierarchy")
    fig.tight_layout()
    save_figure(fig, output_file)
    return fig
