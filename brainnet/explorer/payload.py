"""What the explorer page receives: one JSON-able ``meta`` dict plus named binary buffers.

Buffers are numpy arrays stored little-endian and zlib-compressed (the page inflates them with the
browser's ``DecompressionStream("deflate")``); ``meta["buffers"][key]`` gives each one's dtype
and shape. Parts:

* surfaces (:func:`encode_surfaces`): per surface and hemisphere, coords quantised to uint16 per
  axis (2 axes for flat ones); faces as int32 deltas of the flattened index array (small numbers,
  which compress well), shared by every surface with the same triangles; background greys uint8
  per mesh vertex (sulcal depth, :func:`brainnet.plotting.background_colors`).
* units: ``unit_hemi`` [V] uint8 (0 lh, 1 rh, 2 voxel), ``unit_index`` [V] int32 (mesh vertex).
* ROI outlines: per hemisphere uint8 [n] (1 = mesh vertex on the border of an ROI) and an anchor
  vertex per ROI and hemisphere where its name is written.
"""

from __future__ import annotations

import base64
import io
import zlib

import numpy as np
from PIL import Image

from brainnet.data.layout import HEMI_VOLUME
from brainnet.data.surface import HEMIS, Mesh
from brainnet.plotting.colors import background_colors
from brainnet.plotting.surfaces import load_mesh

#: surfaces the page offers, in order
PAGE_SURFACES = ("inflated", "flat", "sphere")


class Payload:
    """Accumulates ``meta`` and compressed buffers (see the module docstring)."""

    def __init__(self) -> None:
        self.meta: dict = {"buffers": {}}
        self.raw: dict[str, np.ndarray] = {}
        #: per hemisphere name, the faces [F, 3] of the first surface (ROI borders follow them)
        self.topology: dict[str, np.ndarray] = {}
        #: per hemisphere, the coords [n, 3] of the first surface (where ROI names sit)
        self.coords: list[np.ndarray] = []

    def add(self, key: str, array) -> str:
        a = np.ascontiguousarray(array)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        self.raw[key] = a
        self.meta["buffers"][key] = {"dtype": a.dtype.name, "shape": list(a.shape)}
        return key

    def compressed(self) -> dict[str, bytes]:
        """{key: zlib-compressed bytes} of every buffer."""
        return {k: zlib.compress(a.tobytes(), 6) for k, a in self.raw.items()}


def png_data_url(rgb) -> str:
    """An RGB image [H, W, 3] (floats in [0, 1] or uint8) as a PNG data URL."""
    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        a = np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def encode_faces(faces) -> np.ndarray:
    """int32 deltas of the flattened faces [F * 3] (the page takes the cumulative sum)."""
    flat = np.asarray(faces, dtype=np.int64).ravel()
    return np.diff(flat, prepend=0).astype(np.int32)


def _load(source, surf: str) -> Mesh:
    if isinstance(source, dict):
        return source[surf]
    return source if isinstance(source, Mesh) else load_mesh(source, surf)


def encode_surfaces(payload: Payload, source, surfaces=PAGE_SURFACES) -> tuple[int, int]:
    """Add every surface of ``source`` (a :func:`~brainnet.plotting.load_mesh` source, or a dict
    {surface: Mesh}); ``flat`` is the source's flat patch or the flattened occipital cap.

    Returns (n_lh, n_rh), the mesh vertices per hemisphere.
    """
    meshes = {s: _load(source, s) for s in surfaces}
    first = meshes[surfaces[0]]
    n = (first.lh.n_vertices, first.rh.n_vertices)
    face_keys: list[tuple[np.ndarray, str]] = []
    out = []
    for s, m in meshes.items():
        if (m.lh.n_vertices, m.rh.n_vertices) != n:
            raise ValueError(f"surface {s!r} has {m.n_vertices} vertices per hemisphere, {surfaces[0]!r} has {n}")
        dims = 2 if m.flat else 3
        both = np.concatenate([m.lh.coords[:, :dims], m.rh.coords[:, :dims]])
        lo, hi = np.nanmin(both, axis=0), np.nanmax(both, axis=0)  # NaN: vertices off a flat patch
        step = np.where(hi > lo, (hi - lo) / 65535.0, 1.0)
        entry = {"name": s, "flat": bool(m.flat), "lo": lo.tolist(), "step": step.tolist(), "hemis": []}
        for h, hm in zip(HEMIS, (m.lh, m.rh)):
            codes = np.rint(np.nan_to_num((hm.coords[:, :dims] - lo) / step)).astype(np.uint16)
            key = next((k for f, k in face_keys if f.shape == hm.faces.shape and np.array_equal(f, hm.faces)), None)
            if key is None:
                key = payload.add(f"faces{len(face_keys)}", encode_faces(hm.faces))
                face_keys.append((hm.faces, key))
            entry["hemis"].append({"coords": payload.add(f"{s}.{h}.coords", codes), "faces": key,
                                   "n_faces": int(hm.faces.shape[0])})
        out.append(entry)
    for h, hm in zip(HEMIS, (first.lh, first.rh)):
        grey = background_colors(hm.sulc)[:, 0]
        payload.add(f"background.{h}", np.rint(grey * 255).astype(np.uint8))
    payload.meta["surfaces"] = out
    payload.meta["n_vertices"] = list(n)
    payload.topology = {h: hm.faces for h, hm in zip(HEMIS, (first.lh, first.rh))}
    payload.coords = [first.lh.coords, first.rh.coords]
    return n


def check_units(hemi, index, n_units: int, n_vertices: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Units' hemi uint8 [V] (0, 1, 2 = voxel) and mesh index int32 [V] (-1 for voxels); None, None =
    every mesh vertex, lh then rh."""
    if hemi is None and index is None:
        if n_units != sum(n_vertices):
            raise ValueError(f"without hemi / index the maps must cover the full mesh ({sum(n_vertices)} "
                             f"vertices), got {n_units} units")
        hemi = np.repeat([0, 1], n_vertices)
        index = np.concatenate([np.arange(n_vertices[0]), np.arange(n_vertices[1])])
    hemi, index = np.asarray(hemi).astype(np.int64), np.asarray(index).astype(np.int64)
    if hemi.shape != (n_units,) or index.shape != (n_units,):
        raise ValueError(f"hemi {hemi.shape} and index {index.shape} must have shape ({n_units},)")
    if np.any((hemi < 0) | (hemi > HEMI_VOLUME)):
        raise ValueError(f"hemi must be 0 (lh), 1 (rh) or {HEMI_VOLUME} (voxel)")
    index = np.where(hemi == HEMI_VOLUME, -1, index)
    for h in (0, 1):
        sel = index[hemi == h]
        if sel.size and (sel.min() < 0 or sel.max() >= n_vertices[h] or np.unique(sel).size != sel.size):
            raise ValueError(f"{HEMIS[h]} indices must be distinct and in [0, {n_vertices[h]})")
    return hemi.astype(np.uint8), index.astype(np.int32)


def roi_outlines(payload: Payload, codes, hemi, index, names) -> None:
    """Border flags and name anchors of ROI ``codes`` [V] (0 = none) on the mesh topology."""
    codes = np.asarray(codes).astype(np.int64)
    anchors = []
    for h, name in enumerate(HEMIS):
        faces = payload.topology[name]
        n = payload.meta["n_vertices"][h]
        label = np.zeros(n, dtype=np.int64)
        sel = hemi == h
        label[index[sel]] = codes[sel]
        border = np.zeros(n, dtype=bool)
        for a, b in ((0, 1), (1, 2), (2, 0)):
            la, lb = label[faces[:, a]], label[faces[:, b]]
            diff = (la != lb) & ((la > 0) | (lb > 0))
            border[faces[diff, a][la[diff] > 0]] = True
            border[faces[diff, b][lb[diff] > 0]] = True
        payload.add(f"roi_border.{name}", border.astype(np.uint8))
        for code in np.unique(label[label > 0]):
            members = np.flatnonzero(label == code)
            xyz = payload.coords[h][members]
            best = members[np.argmin(np.linalg.norm(xyz - xyz.mean(axis=0), axis=1))]
            anchors.append({"name": str(names[code]), "hemi": h, "vertex": int(best)})
    payload.meta["roi_anchors"] = anchors
