"""Surface maps of per-vertex results (nilearn-style signatures; each returns the Figure).

Common arguments
----------------
hemi, index : arrays of shape (V,), the selected vertices (``PreparedSubject.vertices``
    ``["hemi"]`` / ``["index"]``: 0 lh / 1 rh, vertex index within the hemisphere's mesh). Both None: the
    values cover the full mesh, lh then rh. Vertices not selected show the sulcal background.
mesh : ``"fsaverage5"`` (nilearn's packaged mesh), a :class:`~brainnet.data.PreparedDataset` or
    the path of one (its fsaverage surfaces; needed for fsaverage data, 163842 vertices per
    hemisphere), a loaded :class:`~brainnet.plotting.surfaces.Mesh`, or a dict {view: Mesh}.
view : ``"flat"`` (default), ``"occipital"`` (the occipital cap of the sphere flattened), ``"lateral"``,
    ``"medial"``, ``"dorsal"``, ``"ventral"``, ``"anterior"``, ``"posterior"``, ``"inflated"``
    (= lateral + medial), or a sequence (one row each).
surf : surface of the 3-D views (default ``"inflated"``).
mask : bool array of shape (V,); False = not shown.
rois : int array of shape (V,), ROI code per selected vertex (0 = none), drawn as outlines;
    roi_names : ``roi_names[code]`` written at each ROI (``PreparedSubject.roi_labels(atlas)[1]``).
axes : a matplotlib Axes to draw into (brain and legend share it); figure : a Figure to draw
    into (one Axes filling it); neither: a new Figure.
output_file : path; the figure is saved there (and still returned).
title : str.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from brainnet.plotting import colors as C
from brainnet.plotting.draw import DrawStyle
from brainnet.plotting.layout import FLAT_VIEWS, resolve_meshes, resolve_views
from brainnet.plotting.legends import add_channel_legend, add_colorbar, add_layer_legend, add_space_legend
from brainnet.plotting.render import check_mask, check_values, render_map, save_figure


def plot_scalar_map(
    values,
    hemi=None,
    index=None,
    *,
    mesh="fsaverage5",
    view="flat",
    surf: str | None = None,
    mask=None,
    rois=None,
    roi_names=None,
    axes=None,
    figure=None,
    output_file=None,
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    threshold: float | None = None,
    cmap=None,
    symmetric: bool | None = None,
    colorbar: bool = True,
    label: str | None = None,
    style: DrawStyle | None = None,
) -> Figure:
    """Map a scalar per vertex (Pearson r, R^2, noise ceiling, ...).

    Parameters
    ----------
    values : array of shape (V,); NaN = not shown.
    vmin, vmax : colour limits; default [0, max |value|], or symmetric [-m, m] when values of
        both signs occur (or ``symmetric=True``).
    threshold : |value| < threshold is not shown.
    cmap : default ``"inferno"`` (one-signed) or ``"RdBu_r"`` (symmetric).
    label : colorbar label.
    (see the module docstring for the common arguments)

    Returns
    -------
    matplotlib Figure
    """
    v = check_values(values, hemi, index, 1, "values").astype(np.float64)
    lo, hi = C.resolve_limits(v, vmin, vmax, symmetric)
    if cmap is None:
        cmap = "RdBu_r" if lo < 0 < hi and np.isclose(-lo, hi) else "inferno"
    rgb, shown = C.scalar_colors(v, cmap=cmap, vmin=lo, vmax=hi, threshold=threshold)
    shown &= check_mask(mask, v.shape[0])

    def legend(ax, band):
        add_colorbar(ax, cmap, lo, hi, band, label=label)

    return render_map(rgb, shown, hemi, index, mesh=mesh, view=view, surf=surf, rois=rois, roi_names=roi_names,
                   axes=axes, figure=figure, output_file=output_file, title=title,
                   legend=legend if colorbar else None, style=style)  # fmt: skip


def plot_layer_map(
    weights,
    hemi=None,
    index=None,
    *,
    mesh="fsaverage5",
    view="flat",
    surf: str | None = None,
    mask=None,
    rois=None,
    roi_names=None,
    axes=None,
    figure=None,
    output_file=None,
    title: str | None = None,
    cmap=C.LAYER_CMAP,
    hue: str = "argmax",
    max_entropy: float = 1.0,
    layer_names=None,
    legend: bool = True,
    style: DrawStyle | None = None,
) -> Figure:
    """Map each vertex's preferred backbone layer (hue) and the selector's certainty (brightness).

    Parameters
    ----------
    weights : array of shape (V, L), layer-selector softmax weights.
    cmap : cool-warm scale, first layer cold ... last layer warm.
    hue, max_entropy : see :func:`~brainnet.plotting.colors.layer_colors`.
    layer_names : L tick labels of the 2-D legend (layer x entropy).

    Returns
    -------
    matplotlib Figure
    """
    w = check_values(weights, hemi, index, 2, "weights")
    rgb = C.layer_colors(w, cmap=cmap, hue=hue, max_entropy=max_entropy)
    n_layers = w.shape[1]

    def draw_legend(ax, band):
        add_layer_legend(ax, n_layers, band, layer_names=layer_names, cmap=cmap, max_entropy=max_entropy)

    return render_map(rgb, check_mask(mask, w.shape[0]), hemi, index, mesh=mesh, view=view, surf=surf, rois=rois,
                   roi_names=roi_names, axes=axes, figure=figure, output_file=output_file, title=title,
                   legend=draw_legend if legend else None, style=style, legend_kind="layer")  # fmt: skip


def plot_space_map(
    xy,
    hemi=None,
    index=None,
    *,
    mesh="fsaverage5",
    view="flat",
    surf: str | None = None,
    mask=None,
    rois=None,
    roi_names=None,
    axes=None,
    figure=None,
    output_file=None,
    title: str | None = None,
    legend: bool = True,
    legend_points: bool = True,
    style: DrawStyle | None = None,
) -> Figure:
    """Map each vertex's sampling point (x, y) in the image on a constant-lightness colour square.

    Parameters
    ----------
    xy : array of shape (V, 2) in [-1, 1] (``grid_sample`` convention: x left..right, y top..bottom).
    legend_points : draw the shown vertices' points on the legend square.

    Returns
    -------
    matplotlib Figure
    """
    xy = check_values(xy, hemi, index, 2, "xy")
    rgb = C.space_colors(xy)
    shown = check_mask(mask, xy.shape[0])

    def draw_legend(ax, band):
        add_space_legend(ax, band, xy=xy[shown] if legend_points else None)

    return render_map(rgb, shown, hemi, index, mesh=mesh, view=view, surf=surf, rois=rois, roi_names=roi_names,
                   axes=axes, figure=figure, output_file=output_file, title=title,
                   legend=draw_legend if legend else None, style=style, legend_kind="space")  # fmt: skip


def plot_scale_map(
    scale,
    hemi=None,
    index=None,
    *,
    mesh="fsaverage5",
    view="flat",
    surf: str | None = None,
    mask=None,
    rois=None,
    roi_names=None,
    axes=None,
    figure=None,
    output_file=None,
    title: str | None = None,
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap=C.SCALE_CMAP,
    colorbar: bool = True,
    style: DrawStyle | None = None,
) -> Figure:
    """Map each vertex's scale selector s: local (vmin, purple) ... global (vmax, orange).

    Parameters
    ----------
    scale : array of shape (V,), s = sigmoid output in [0, 1].

    Returns
    -------
    matplotlib Figure
    """
    s = check_values(scale, hemi, index, 1, "scale").astype(np.float64)
    rgb = C.scale_colors(s, cmap=cmap, vmin=vmin, vmax=vmax)
    shown = check_mask(mask, s.shape[0]) & np.isfinite(s)

    def legend(ax, band):
        add_colorbar(ax, cmap, vmin, vmax, band, label="scale", ticks=[vmin, (vmin + vmax) / 2, vmax],
                     ticklabels=["local", "", "global"])  # fmt: skip

    return render_map(rgb, shown, hemi, index, mesh=mesh, view=view, surf=surf, rois=rois, roi_names=roi_names,
                   axes=axes, figure=figure, output_file=output_file, title=title,
                   legend=legend if colorbar else None, style=style)  # fmt: skip


def plot_channel_map(
    channels,
    hemi=None,
    index=None,
    *,
    mesh="fsaverage5",
    view="flat",
    surf: str | None = None,
    mask=None,
    rois=None,
    roi_names=None,
    axes=None,
    figure=None,
    output_file=None,
    title: str | None = None,
    cmap=C.CHANNEL_CMAP,
    channel_names=None,
    legend: bool = True,
    style: DrawStyle | None = None,
) -> Figure:
    """Map each vertex's channel (cluster id) on a qualitative colormap (tab20).

    Parameters
    ----------
    channels : int array of shape (V,), ids >= 0.
    channel_names : ``channel_names[id]`` for the legend (default: the ids).

    Returns
    -------
    matplotlib Figure
    """
    ids = check_values(channels, hemi, index, 1, "channels")
    rgb = C.channel_colors(ids, cmap=cmap)
    shown = check_mask(mask, ids.shape[0])

    def draw_legend(ax, band):
        add_channel_legend(ax, ids[shown], band, cmap=cmap, names=channel_names)

    return render_map(rgb, shown, hemi, index, mesh=mesh, view=view, surf=surf, rois=rois, roi_names=roi_names,
                   axes=axes, figure=figure, output_file=output_file, title=title,
                   legend=draw_legend if legend and shown.any() else None, style=style,
                   legend_kind=_channel_legend_height(ids[shown], channel_names))  # fmt: skip


def _channel_legend_height(ids, names) -> str | float:
    """Legend band height: one swatch row, or enough rows of named patches (8 per row)."""
    if names is None:
        return "channel"
    rows = int(np.ceil(np.unique(ids).size / 8))
    return 0.04 + 0.035 * max(rows, 1)


def plot_four_panel(
    layer_weights,
    xy,
    scale,
    channels,
    hemi=None,
    index=None,
    *,
    mesh="fsaverage5",
    view="flat",
    surf: str | None = None,
    mask=None,
    rois=None,
    roi_names=None,
    figure=None,
    output_file=None,
    title: str | None = None,
    layer_names=None,
    max_entropy: float = 1.0,
    style: DrawStyle | None = None,
) -> Figure:
    """The brain-to-network figure: layer / space / scale / channel maps in a 2 x 2 grid.

    Parameters
    ----------
    layer_weights : array of shape (V, L); xy : (V, 2) in [-1, 1]; scale : (V,) in [0, 1];
    channels : int array of shape (V,).
    (see the module docstring for the common arguments)

    Returns
    -------
    matplotlib Figure
    """
    views = resolve_views(view)
    meshes = resolve_meshes(mesh, views, surf)
    one_flat_row = len(views) == 1 and views[0] in FLAT_VIEWS
    fig = figure if figure is not None else Figure(figsize=(16, 9.5 if one_flat_row else 6.0 * len(views)))
    axs = fig.subplots(2, 2)
    common = dict(mesh=meshes, view=views, mask=mask, rois=rois, roi_names=roi_names, style=style)
    plot_layer_map(layer_weights, hemi, index, axes=axs[0, 0], title="layer", layer_names=layer_names,
                   max_entropy=max_entropy, **common)  # fmt: skip
    plot_space_map(xy, hemi, index, axes=axs[0, 1], title="space", **common)
    plot_scale_map(scale, hemi, index, axes=axs[1, 0], title="scale", **common)
    plot_channel_map(channels, hemi, index, axes=axs[1, 1], title="channel", **common)
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.93 if title else 0.96, bottom=0.02, wspace=0.05, hspace=0.12)
    save_figure(fig, output_file)
    return fig
