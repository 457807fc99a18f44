"""Draw a :class:`~brainnet.plotting.layout.BrainLayout` into one matplotlib Axes.

Faces are drawn as a ``PolyCollection`` (no antialiasing, no edges: exact colours). A face's
colour is the mean of its shown vertices' colours blended over the sulcal background by the
fraction of its vertices that are shown, so a patch of equally coloured vertices is drawn in
exactly that colour and the data fades into the background at its border. 3-D views darken
faces turned away from the camera (background more than data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib import patheffects
from matplotlib.collections import LineCollection, PolyCollection

from brainnet.plotting.layout import BrainLayout, HemiPanel

HEMI_LABELS = ("left hemisphere", "right hemisphere")


@dataclass(frozen=True)
class DrawStyle:
    """Appearance knobs of :func:`draw_brain`.

    Attributes
    ----------
    background_shading : strength of the camera-facing shading on the background (3-D views).
    data_shading : the same on data colours (0 = exact colours also in 3-D views).
    roi_color, roi_linewidth : ROI outline colour and width (points).
    roi_fontsize : size of ROI names; ``roi_min_vertices``: smaller visible ROIs get no name.
    hemi_labels : the two hemisphere titles, or None for none.
    """

    background_shading: float = 0.55
    data_shading: float = 0.35
    roi_color: str = "white"
    roi_linewidth: float = 0.8
    roi_fontsize: float = 7.0
    roi_min_vertices: int = 5
    hemi_labels: tuple[str, str] | None = HEMI_LABELS
    hemi_fontsize: float = 10.0


def face_colors(panel: HemiPanel, rgb: np.ndarray, shown: np.ndarray, background: np.ndarray, style: DrawStyle):
    """RGB of each drawn face.

    Parameters
    ----------
    rgb : array of shape (n_vertices, 3), data colour per mesh vertex (ignored where not shown).
    shown : bool array of shape (n_vertices,).
    background : array of shape (n_vertices, 3).

    Returns
    -------
    array of shape (n_drawn_faces, 3).
    """
    f = panel.faces
    w = shown[f].astype(np.float64)  # (F, 3)
    count = w.sum(axis=1)
    data = np.einsum("fk,fkc->fc", w, np.nan_to_num(rgb)[f]) / np.maximum(count, 1.0)[:, None]
    bg = background[f].mean(axis=1)
    if panel.shade is not None:
        s = panel.shade[:, None]
        bg = bg * (1.0 - style.background_shading + style.background_shading * s)
        data = data * (1.0 - style.data_shading + style.data_shading * s)
    alpha = (count / 3.0)[:, None]
    return np.clip(alpha * data + (1.0 - alpha) * bg, 0.0, 1.0)


def roi_segments(panel: HemiPanel, labels: np.ndarray) -> np.ndarray:
    """Boundary lines between ROIs, by marching triangles over the drawn faces.

    Parameters
    ----------
    labels : int array of shape (n_vertices,); 0 = no ROI, -1 = vertex not selected.
        Boundaries are drawn where the label changes between two selected vertices and one
        side is an ROI (> 0); the edge of the selection itself gets no line.

    Returns
    -------
    array of shape (n_segments, 2, 2): segment end points in screen coordinates.
    """
    f = panel.faces
    lab = labels[f]
    xy = panel.xy[f]  # (F, 3, 2)
    edges = ((0, 1), (1, 2), (2, 0))
    diff = np.stack(
        [
            (lab[:, a] != lab[:, b]) & (np.maximum(lab[:, a], lab[:, b]) > 0) & (np.minimum(lab[:, a], lab[:, b]) >= 0)
            for a, b in edges
        ],
        axis=1,
    )
    real = np.stack([lab[:, a] != lab[:, b] for a, b in edges], axis=1)
    mids = np.stack([(xy[:, a] + xy[:, b]) / 2.0 for a, b in edges], axis=1)  # (F, 3, 2)
    segs = []
    two = (real.sum(axis=1) == 2) & diff.any(axis=1)
    if two.any():
        idx = np.argsort(~real[two], axis=1, kind="stable")[:, :2]  # the two changing edges
        m = mids[two]
        rows = np.arange(m.shape[0])
        segs.append(np.stack([m[rows, idx[:, 0]], m[rows, idx[:, 1]]], axis=1))
    three = real.sum(axis=1) == 3
    if three.any():
        centre = xy[three].mean(axis=1)
        for e in range(3):
            ok = diff[three, e]
            segs.append(np.stack([mids[three][ok, e], centre[ok]], axis=1))
    return np.concatenate(segs, axis=0) if segs else np.zeros((0, 2, 2))


def roi_label_positions(panel: HemiPanel, labels: np.ndarray, min_vertices: int = 5) -> dict[int, np.ndarray]:
    """Where to write each visible ROI's name: the ROI's visible vertex nearest its centroid.

    Returns
    -------
    {code: array of shape (2,)} for codes > 0 with at least ``min_vertices`` visible vertices.
    """
    vis = panel.visible
    out = {}
    for code in np.unique(labels[vis]):
        if code <= 0:
            continue
        sel = np.flatnonzero(vis & (labels == code))
        if sel.size < min_vertices:
            continue
        pts = panel.xy[sel]
        centre = pts.mean(axis=0)
        out[int(code)] = pts[np.argmin(((pts - centre) ** 2).sum(axis=1))]
    return out


def draw_brain(
    ax,
    layout: BrainLayout,
    rgb: list[np.ndarray],
    shown: list[np.ndarray],
    background: list[np.ndarray],
    *,
    rois: list[np.ndarray] | None = None,
    roi_names=None,
    legend_height: float = 0.0,
    style: DrawStyle | None = None,
) -> float:
    """Draw both hemispheres of every view of ``layout`` into ``ax``.

    Parameters
    ----------
    rgb, shown, background : per hemisphere [lh, rh], arrays of shape (n_h, 3), (n_h,), (n_h, 3).
    rois : per hemisphere int labels of shape (n_h,) (0 none, -1 not selected), or None.
    roi_names : sequence, ``roi_names[code]`` is written at the ROI; None = no names.
    legend_height : height of an empty band left at the bottom for a legend, as a fraction of
        the drawing's width.

    Returns
    -------
    The band's height as a fraction of the Axes height (0 when ``legend_height`` is 0).
    """
    style = style or DrawStyle()
    for panel in layout.panels:
        h = panel.hemi
        colors = face_colors(panel, rgb[h], shown[h], background[h], style)
        coll = PolyCollection(
            panel.xy[panel.faces], facecolors=colors, edgecolors="none", linewidths=0, antialiased=False
        )
        coll.set_rasterized(True)
        ax.add_collection(coll, autolim=False)
        if rois is not None:
            segs = roi_segments(panel, rois[h])
            if len(segs):
                ax.add_collection(
                    LineCollection(segs, colors=style.roi_color, linewidths=style.roi_linewidth, capstyle="round"),
                    autolim=False,
                )
            if roi_names is not None:
                for code, pos in roi_label_positions(panel, rois[h], style.roi_min_vertices).items():
                    name = str(roi_names[code]) if code < len(roi_names) else str(code)
                    ax.text(
                        pos[0], pos[1], name, fontsize=style.roi_fontsize, ha="center", va="center",
                        color="black", path_effects=[patheffects.withStroke(linewidth=2.0, foreground="white")],
                    )  # fmt: skip
    x0, x1, y0, y1 = layout.extent
    head = (0.05 if style.hemi_labels else 0.01) * (x1 - x0)
    multi = len(layout.views) > 1
    margin_x = (0.10 if multi else 0.02) * (x1 - x0)
    top = y1 + head
    band = legend_height * (x1 - x0)
    total = top - y0 + band
    ax.set_xlim(x0 - margin_x, x1 + 0.02 * (x1 - x0))
    ax.set_ylim(top - total, top)
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()
    if style.hemi_labels:
        for h in (0, 1):
            p = layout.panel(layout.views[0], h)
            xs = p.xy[np.unique(p.faces), 0]
            ax.text(
                (xs.min() + xs.max()) / 2, y1 + 0.01 * (x1 - x0), style.hemi_labels[h],
                ha="center", va="bottom", fontsize=style.hemi_fontsize,
            )  # fmt: skip
    if multi:
        for v in layout.views:
            p = layout.panel(v, 0)
            ys = p.xy[np.unique(p.faces), 1]
            ax.text(x0 - 0.03 * (x1 - x0), (ys.min() + ys.max()) / 2, v, rotation=90, ha="right", va="center",
                    fontsize=9)
    return band / total
