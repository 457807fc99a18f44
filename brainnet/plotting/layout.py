"""Where each hemisphere and view is drawn: 2-D screen coordinates of every mesh vertex.

A :class:`BrainLayout` holds one :class:`HemiPanel` per (view, hemisphere): rows are views,
the left hemisphere on the left, the right hemisphere on the right, all in one data
coordinate system (mesh units, e.g. mm) of a single matplotlib Axes. Flat meshes are drawn
as they are; 3-D surfaces are projected orthographically from a camera per view, faces facing
away are dropped and the rest sorted far-to-near (painter's algorithm) with a shading factor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from brainnet.plotting.surfaces import Mesh, load_mesh

# camera direction (from the brain towards the camera) for the left hemisphere, and screen-up
_CAMERAS = {
    "lateral": ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "medial": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "dorsal": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    # from below with posterior up, so that (as in every view) the medial sides face each other
    "ventral": ((0.0, 0.0, -1.0), (0.0, -1.0, 0.0)),
    "anterior": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "posterior": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
}
#: 2-D views, each drawn on the surface of the same name
FLAT_VIEWS = ("flat", "occipital")
VIEWS = FLAT_VIEWS + tuple(_CAMERAS)
VIEW_ALIASES = {"inflated": ("lateral", "medial")}


@dataclass(frozen=True)
class HemiPanel:
    """One hemisphere in one view.

    Attributes
    ----------
    view : str
    hemi : int, 0 lh / 1 rh.
    xy : array of shape (n_vertices, 2), screen position of every mesh vertex (data coords).
    faces : array of shape (n_drawn, 3), the faces to draw, in drawing order.
    shade : array of shape (n_drawn,) in [0, 1] (1 = facing the camera) or None (flat).
    """

    view: str
    hemi: int
    xy: np.ndarray
    faces: np.ndarray
    shade: np.ndarray | None

    @property
    def visible(self) -> np.ndarray:
        """Bool array of shape (n_vertices,): the vertex belongs to a drawn face."""
        mask = np.zeros(self.xy.shape[0], dtype=bool)
        mask[self.faces.ravel()] = True
        return mask


@dataclass(frozen=True)
class BrainLayout:
    """All panels plus the bounding box (xmin, xmax, ymin, ymax) of the drawn faces."""

    panels: tuple[HemiPanel, ...]
    views: tuple[str, ...]
    extent: tuple[float, float, float, float]
    n_vertices: tuple[int, int]

    def panel(self, view: str, hemi: int) -> HemiPanel:
        for p in self.panels:
            if p.view == view and p.hemi == hemi:
                return p
        raise KeyError(f"no panel for view {view!r}, hemi {hemi}")


def resolve_views(view) -> tuple[str, ...]:
    """``"flat"`` / ``"occipital"`` / ``"lateral"`` / ... / ``"inflated"`` (= lateral + medial) or a sequence
    of them -> the views drawn, one row each."""
    names = (view,) if isinstance(view, str) else tuple(view)
    out: list[str] = []
    for v in names:
        if v in VIEW_ALIASES:
            out.extend(VIEW_ALIASES[v])
        elif v in VIEWS:
            out.append(v)
        else:
            raise ValueError(f"unknown view {v!r}: use one of {VIEWS + tuple(VIEW_ALIASES)}")
    if not out:
        raise ValueError("no view given")
    return tuple(out)


def resolve_meshes(mesh, views: tuple[str, ...], surf: str | None = None) -> dict[str, Mesh]:
    """The mesh drawn for each view.

    Parameters
    ----------
    mesh : a :class:`Mesh` (used for every view), a :class:`~brainnet.data.PreparedDataset`
        (its surfaces) or a source for :func:`load_mesh`.
    surf : surface of the 3-D views (default ``"inflated"``); flat views use ``"flat"``.
    """
    if isinstance(mesh, Mesh):
        for v in views:
            if (v in FLAT_VIEWS) != mesh.is_flat:
                raise ValueError(
                    f"view {v!r} cannot be drawn on a {mesh.surf!r} mesh; pass a mesh source "
                    "(e.g. 'fsaverage5') to load the right surface"
                )
        return {v: mesh for v in views}
    if not isinstance(mesh, (str, os.PathLike)):
        from brainnet.data.prepared import PreparedDataset  # here: plotting alone does not need brainnet.data

        if not isinstance(mesh, PreparedDataset):
            raise TypeError(
                f"mesh must be a Mesh, a PreparedDataset, 'fsaverage5' or a path, got {type(mesh).__name__}"
            )
        mesh = mesh.root
    surf3d = surf or "inflated"
    if surf3d in FLAT_VIEWS and any(v not in FLAT_VIEWS for v in views):
        raise ValueError(f"surf={surf3d!r} only goes with a flat view {FLAT_VIEWS}")
    loaded: dict[str, Mesh] = {}
    out = {}
    for v in views:
        s = v if v in FLAT_VIEWS else surf3d
        if s not in loaded:
            loaded[s] = load_mesh(mesh, s)
        out[v] = loaded[s]
    return out


def _project(coords: np.ndarray, faces: np.ndarray, view: str, hemi: int):
    """Screen xy [n, 2], drawn faces (sorted far-to-near) and their shading for one camera."""
    direction, up = (np.asarray(a, dtype=np.float64) for a in _CAMERAS[view])
    if hemi == 1 and view in ("lateral", "medial"):
        direction = -direction
    forward = -direction
    right = np.cross(forward, up)
    centred = coords - coords.mean(axis=0)
    xy = np.stack([centred @ right, centred @ up], axis=1)
    tri = coords[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normals, axis=1)
    length[length == 0] = 1.0
    normals /= length[:, None]
    # faces of fsaverage point outwards; detect the convention rather than assume it
    outward = np.sum(normals * (tri.mean(axis=1) - coords.mean(axis=0)), axis=1)
    if np.mean(outward > 0) < 0.5:
        normals = -normals
    facing = normals @ direction
    keep = np.flatnonzero(facing > 0)
    depth = tri[keep].mean(axis=1) @ direction
    order = keep[np.argsort(depth, kind="stable")]
    return xy, faces[order], np.clip(facing[order], 0.0, 1.0)


def layout_from_meshes(view_meshes: dict[str, Mesh], views: tuple[str, ...]) -> BrainLayout:
    """Place every (view, hemisphere) panel; see :class:`BrainLayout`."""
    raw = []
    for v in views:
        m = view_meshes[v]
        row = []
        for h in (0, 1):
            hm = m.hemisphere(h)
            if v in FLAT_VIEWS:
                xy, faces, shade = hm.coords[:, :2].copy(), hm.faces, None
            else:
                xy, faces, shade = _project(hm.coords, hm.faces, v, h)
            if faces.shape[0] == 0:
                raise ValueError(f"nothing to draw for hemisphere {h} in view {v!r}")
            used = np.unique(faces)
            lo, hi = xy[used].min(axis=0), xy[used].max(axis=0)
            row.append((xy, faces, shade, lo, hi))
        raw.append(row)
    width = max(x[4][0] - x[3][0] for row in raw for x in row)
    height = max(x[4][1] - x[3][1] for row in raw for x in row)
    gap_x, gap_y = 0.06 * width, 0.12 * height
    panels = []
    y_top = 0.0
    boxes = []
    for v, row in zip(views, raw):
        row_h = max(x[4][1] - x[3][1] for x in row)
        for h, (xy, faces, shade, lo, hi) in enumerate(row):
            # lh: right edge at -gap/2; rh: left edge at +gap/2; rows stacked downwards
            dx = (-gap_x / 2 - hi[0]) if h == 0 else (gap_x / 2 - lo[0])
            dy = y_top - row_h / 2 - (lo[1] + hi[1]) / 2
            xy = xy + np.array([dx, dy])
            panels.append(HemiPanel(view=v, hemi=h, xy=xy, faces=faces, shade=shade))
            boxes.append((lo[0] + dx, hi[0] + dx, lo[1] + dy, hi[1] + dy))
        y_top -= row_h + gap_y
    b = np.array(boxes)
    extent = (float(b[:, 0].min()), float(b[:, 1].max()), float(b[:, 2].min()), float(b[:, 3].max()))
    n = view_meshes[views[0]].n_vertices
    return BrainLayout(panels=tuple(panels), views=views, extent=extent, n_vertices=n)


def compute_layout(mesh="fsaverage5", view="flat", surf: str | None = None) -> BrainLayout:
    """Screen layout of both hemispheres for ``view`` (what the plot functions draw).

    Parameters
    ----------
    mesh : ``"fsaverage5"``, a :class:`~brainnet.data.PreparedDataset` or its path, or a :class:`Mesh`.
    view : ``"flat"``, ``"occipital"`` (flattened occipital cap), ``"lateral"``, ``"medial"``, ``"dorsal"``,
        ``"ventral"``, ``"anterior"``,
        ``"posterior"``, ``"inflated"`` (lateral + medial), or a sequence of them (rows).
    surf : surface for the 3-D views (default ``"inflated"``).
    """
    views = resolve_views(view)
    return layout_from_meshes(resolve_meshes(mesh, views, surf), views)
