"""Drawing per-vertex colours on both hemispheres: the step every surface map shares.

:func:`render_map` places the colours of the selected vertices on the mesh, draws the brain
(with ROI outlines) into an Axes, leaves a band for a legend and saves the figure;
:func:`check_values` and :func:`check_mask` validate the per-vertex inputs of the plot functions
in :mod:`brainnet.plotting.maps`, whose module docstring describes the common arguments.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from matplotlib.figure import Figure

from brainnet.plotting import colors as C
from brainnet.plotting.draw import DrawStyle, draw_brain
from brainnet.plotting.layout import layout_from_meshes, resolve_meshes, resolve_views
from brainnet.plotting.placement import check_selection, to_mesh_values

# legend band height / drawing width, per legend kind
LEGEND_HEIGHT = {"colorbar": 0.11, "layer": 0.16, "space": 0.2, "channel": 0.11}
SAVE_DPI = 150


def save_figure(fig: Figure, output_file, dpi: int = SAVE_DPI) -> None:
    """Save ``fig`` to ``output_file`` (a path; None = do nothing) on a white background."""
    if output_file is not None:
        fig.savefig(os.fspath(output_file), dpi=dpi, bbox_inches="tight", facecolor="white")


def target_axes(axes, figure, size: tuple[float, float]):
    """The Axes to draw into: ``axes`` (checked to belong to ``figure``), else a new Axes filling
    ``figure``, else one filling a new Figure of ``size`` inches."""
    if axes is not None:
        if figure is not None and axes.figure is not figure:
            raise ValueError("axes does not belong to the given figure")
        return axes
    fig = figure if figure is not None else Figure(figsize=size)
    return fig.add_subplot(111)


def render_map(
    rgb: np.ndarray,
    shown: np.ndarray,
    hemi,
    index,
    *,
    mesh,
    view,
    surf,
    rois,
    roi_names,
    axes,
    figure,
    output_file,
    title,
    legend: Callable | None,
    style: DrawStyle | None,
    legend_kind: str | float = "colorbar",
) -> Figure:
    """Draw per-selected-vertex colours rgb [V, 3] where shown [V] on both hemispheres."""
    views = resolve_views(view)
    meshes = mesh if isinstance(mesh, dict) else resolve_meshes(mesh, views, surf)
    layout = layout_from_meshes(meshes, views)
    n = layout.n_vertices
    rgb_full = to_mesh_values(rgb, hemi, index, n)
    shown_full = [s > 0.5 for s in to_mesh_values(shown.astype(np.float64), hemi, index, n, fill=0.0)]
    first = meshes[views[0]]
    background = [C.background_colors(first.hemisphere(h).sulc) for h in (0, 1)]
    rois_full = None
    if rois is not None:
        r = np.asarray(rois)
        if r.ndim != 1 or r.shape[0] != rgb.shape[0] or not np.issubdtype(r.dtype, np.integer):
            raise ValueError(f"rois must be an integer array of shape ({rgb.shape[0]},), got {r.dtype} {r.shape}")
        rois_full = [x.astype(np.int64) for x in to_mesh_values(r, hemi, index, n, fill=-1)]
    if legend is None:
        legend_height = 0.0
    else:
        legend_height = LEGEND_HEIGHT[legend_kind] if isinstance(legend_kind, str) else float(legend_kind)
    x0, x1, y0, y1 = layout.extent
    aspect = (y1 - y0) * 1.12 / (x1 - x0) + legend_height
    ax = target_axes(axes, figure, (10.0, min(max(10.0 * aspect + 0.6, 3.0), 30.0)))
    band = draw_brain(ax, layout, rgb_full, shown_full, background, rois=rois_full, roi_names=roi_names,
                      legend_height=legend_height, style=style)  # fmt: skip
    if legend is not None:
        legend(ax, band)
    if title:
        ax.set_title(title)
    save_figure(ax.figure, output_file)
    return ax.figure


def check_mask(mask, n: int) -> np.ndarray:
    """Bool array of shape (n,): ``mask`` checked, or all True when None."""
    if mask is None:
        return np.ones(n, dtype=bool)
    m = np.asarray(mask)
    if m.shape != (n,) or m.dtype != bool:
        raise ValueError(f"mask must be a bool array of shape ({n},), got {m.dtype} {m.shape}")
    return m


def check_values(values, hemi, index, ndim: int, what: str) -> np.ndarray:
    """``values`` as an array with ``ndim`` dimensions whose first (V) matches the selection."""
    v = np.asarray(values)
    if v.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimension(s), got shape {v.shape}")
    if hemi is not None or index is not None:
        check_selection(hemi, index, v.shape[0], (np.iinfo(np.int64).max,) * 2)
    return v
