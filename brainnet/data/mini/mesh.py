"""fsaverage-like meshes for nsd-mini, built offline from fsaverage5 (:func:`brainnet.data.surface.fsaverage5`).

FreeSurfer's icosahedral meshes nest: the first 642 / 2562 vertices of fsaverage5 (10242 per
hemisphere) are fsaverage3 / fsaverage4, and every further vertex is the midpoint of an edge of
the coarser mesh. So:

* ``fsaverage5``: as nilearn ships it (sphere, white, pial, inflated, flat, curv, sulc).
* ``fsaverage3`` / ``fsaverage4``: the first 642 / 2562 vertices; coarse faces are recovered
  from the fine central triangles (each made of three edge midpoints).
* ``fsaverage6``-like (40962 per hemisphere): one midpoint subdivision of fsaverage5. New
  vertex ``10242 + k`` is the midpoint of the k-th edge in lexicographic (min, max) order; the
  sphere is re-projected to radius 100, other surfaces use the plain midpoint, morphometry the
  endpoint mean. The vertex order of new vertices is ours (FreeSurfer's may differ).

The flat surface is a cut of the mesh (nilearn's flat fsaverage5 leaves out the medial wall);
it keeps the faces present in the flat mesh.
"""

from __future__ import annotations

import numpy as np

from brainnet.data.surface import HEMIS, HemiMesh, fsaverage5

from .config import MESH_VERTICES

#: One hemisphere of a generated mesh: surface name (sphere, white, pial, inflated, flat) ->
#: :class:`HemiMesh` (float32 coords, int32 faces; float32 sulc and curv shared by every surface).
Surfaces = dict[str, HemiMesh]


def _with_faces(surfaces: Surfaces, coords: dict, sphere_faces: np.ndarray, flat_faces: np.ndarray,
                curv: np.ndarray, sulc: np.ndarray) -> Surfaces:
    return {s: HemiMesh(coords[s], flat_faces if s == "flat" else sphere_faces, sulc, curv) for s in surfaces}


def _coarsen(mesh: Surfaces) -> Surfaces:
    """Drop one nesting level: keep the first (n + 6) / 4 vertices."""
    n_fine = mesh["sphere"].n_vertices
    n = (n_fine + 6) // 4
    fine_faces = mesh["sphere"].faces
    # coarse edge of each midpoint vertex: its two neighbours with index < n
    nbr_lo = np.full((n_fine, 2), -1, dtype=np.int64)
    count = np.zeros(n_fine, dtype=np.int64)
    edges = np.concatenate([fine_faces[:, [0, 1]], fine_faces[:, [1, 2]], fine_faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    for a, b in edges:  # a < b; record coarse endpoints of midpoints
        if b >= n and a < n:
            nbr_lo[b, count[b]] = a
            count[b] += 1
    if not np.all(count[n:] == 2):
        raise RuntimeError("mesh is not a nested icosahedral subdivision")

    def coarse_from(faces_fine: np.ndarray) -> np.ndarray:
        central = faces_fine[np.all(faces_fine >= n, axis=1)]
        out = np.empty_like(central)
        for j in range(3):
            e1, e2 = nbr_lo[central[:, j]], nbr_lo[central[:, (j + 1) % 3]]
            # vertex shared by the edges of midpoints j and j+1 -> coarse corner b_j
            shared = np.where((e1[:, :1] == e2[:, :1]) | (e1[:, :1] == e2[:, 1:]), e1[:, :1], e1[:, 1:])
            out[:, (j + 1) % 3] = shared[:, 0]
        return out.astype(np.int32)

    coords = {s: m.coords[:n].copy() for s, m in mesh.items()}
    sphere = mesh["sphere"]
    return _with_faces(mesh, coords, coarse_from(fine_faces), coarse_from(mesh["flat"].faces),
                       sphere.curv[:n].copy(), sphere.sulc[:n].copy())


def _subdivide(mesh: Surfaces) -> Surfaces:
    """One midpoint subdivision (n -> 4n - 6 vertices)."""
    n = mesh["sphere"].n_vertices
    f = mesh["sphere"].faces.astype(np.int64)
    edges = np.unique(np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1), axis=0)
    key = edges[:, 0] * n + edges[:, 1]

    def mid(a, b):
        k = np.minimum(a, b) * n + np.maximum(a, b)
        return n + np.searchsorted(key, k)

    def split(faces: np.ndarray) -> np.ndarray:
        a, b, c = faces[:, 0].astype(np.int64), faces[:, 1].astype(np.int64), faces[:, 2].astype(np.int64)
        ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
        out = np.stack([np.stack([a, ab, ca], 1), np.stack([ab, b, bc], 1),
                        np.stack([ca, bc, c], 1), np.stack([ab, bc, ca], 1)], 1)
        return out.reshape(-1, 3).astype(np.int32)

    coords = {}
    for s, surface in mesh.items():
        c = surface.coords
        m = 0.5 * (c[edges[:, 0]] + c[edges[:, 1]])
        if s == "sphere":
            m = m / np.linalg.norm(m, axis=1, keepdims=True) * np.linalg.norm(c, axis=1).mean()
        coords[s] = np.concatenate([c, m]).astype(np.float32)

    def morph(x):
        return np.concatenate([x, 0.5 * (x[edges[:, 0]] + x[edges[:, 1]])]).astype(np.float32)

    sphere = mesh["sphere"]
    return _with_faces(mesh, coords, split(f), split(mesh["flat"].faces), morph(sphere.curv), morph(sphere.sulc))


def load_mesh(name: str, hemi: str) -> Surfaces:
    """The named fsaverage-like mesh of one hemisphere (offline, from nilearn's fsaverage5).

    Args:
        name: one of "fsaverage3", "fsaverage4", "fsaverage5", "fsaverage6".
        hemi: "lh" or "rh".

    Returns:
        surface name (sphere, white, pial, inflated, flat) -> :class:`~brainnet.data.surface.HemiMesh`.
    """
    if name not in MESH_VERTICES:
        raise ValueError(f"mesh must be one of {sorted(MESH_VERTICES)}, got {name!r}")
    if hemi not in HEMIS:
        raise ValueError(f"hemi must be 'lh' or 'rh', got {hemi!r}")
    mesh = fsaverage5(hemi)
    while mesh["sphere"].n_vertices > MESH_VERTICES[name]:
        mesh = _coarsen(mesh)
    while mesh["sphere"].n_vertices < MESH_VERTICES[name]:
        mesh = _subdivide(mesh)
    return mesh


def write_surfaces(surf_dir, hemi: str, mesh: Surfaces) -> None:
    """Write FreeSurfer surfaces of one hemisphere into ``surf_dir``.

    Files: ``{hemi}.{sphere,sphere.reg,inflated,white,pial}`` (triangle geometry),
    ``{hemi}.{curv,sulc}`` (morph data) and ``{hemi}.full.flat.patch.3d`` (patch).
    """
    from pathlib import Path

    from nibabel.freesurfer import write_geometry, write_morph_data

    surf_dir = Path(surf_dir)
    surf_dir.mkdir(parents=True, exist_ok=True)
    names = {"sphere": "sphere", "sphere.reg": "sphere", "inflated": "inflated", "white": "white", "pial": "pial"}
    for fname, surf in names.items():
        # a fixed create_stamp keeps the bytes reproducible
        write_geometry(surf_dir / f"{hemi}.{fname}", mesh[surf].coords, mesh[surf].faces,
                       create_stamp=f"created by brainnet nsd-mini ({surf})")
    write_morph_data(surf_dir / f"{hemi}.curv", mesh["sphere"].curv)
    write_morph_data(surf_dir / f"{hemi}.sulc", mesh["sphere"].sulc)
    write_patch(surf_dir / f"{hemi}.full.flat.patch.3d", mesh["flat"].coords, mesh["flat"].faces)


def write_patch(path, coords: np.ndarray, faces: np.ndarray) -> None:
    """Write a FreeSurfer binary patch (new format).

    Layout, big-endian: int32 -1, int32 n_points, then per point int32 index and float32 x, y, z,
    where index = vertex + 1, negated for vertices on the patch border. Points are the vertices
    used by ``faces``, ascending.

    Args:
        coords: float array (n_vertices, 3) of flat coordinates.
        faces: int array (n_faces, 3) of the faces kept in the patch.
    """
    faces = np.asarray(faces, dtype=np.int64)
    used = np.unique(faces)
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, cnt = np.unique(e, axis=0, return_counts=True)
    border = np.zeros(coords.shape[0], dtype=bool)
    border[uniq[cnt == 1].ravel()] = True
    idx = (used + 1).astype(np.int64)
    idx[border[used]] *= -1
    rec = np.zeros(len(used), dtype=[("i", ">i4"), ("xyz", ">f4", (3,))])
    rec["i"] = idx
    rec["xyz"] = coords[used]
    with open(path, "wb") as fh:
        fh.write(np.array([-1, len(used)], dtype=">i4").tobytes())
        fh.write(rec.tobytes())
