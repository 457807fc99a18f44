"""fsaverage surfaces: the one mesh type, the fsaverage5 loader, and the occipital flattening.

Used by the nsd-mini generator (:mod:`brainnet.data.mini.mesh` builds its meshes from
:func:`fsaverage5`) and by plotting (:mod:`brainnet.plotting.surfaces`).

* :class:`HemiMesh`: one surface of one hemisphere (coords, faces, sulcal depth, curvature).
* :class:`Mesh`: both hemispheres of one surface type.
* :func:`fsaverage5`: every surface of one hemisphere of fsaverage5 (10242 vertices), read
  offline through nilearn's public :func:`nilearn.datasets.load_fsaverage` (nilearn ships
  fsaverage5 with the package, no download).
* :func:`flatten_occipital_cap`: a flat map of the occipital cap of a sphere.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

HEMIS: tuple[str, str] = ("lh", "rh")
#: Surfaces of fsaverage5 (as named here; nilearn calls ``white`` ``white_matter``).
FSAVERAGE_SURFACES: tuple[str, ...] = ("sphere", "white", "pial", "inflated", "flat")
_NILEARN_SURF = {"sphere": "sphere", "white": "white_matter", "pial": "pial", "inflated": "inflated", "flat": "flat"}
_NILEARN_HEMI = {"lh": "left", "rh": "right"}


@dataclass(frozen=True)
class HemiMesh:
    """One surface of one hemisphere.

    Attributes:
        coords: float array [n_vertices, 3] (float32 as read; plotting keeps float64). A flat
            mesh uses only x, y.
        faces: int array [n_faces, 3], vertex indices of each triangle. A flat mesh may leave
            vertices out of every face (cut, or outside the flattened patch).
        sulc: float array [n_vertices], sulcal depth (positive = deep).
        curv: float array [n_vertices], curvature, or None when the source has none.
    """

    coords: np.ndarray
    faces: np.ndarray
    sulc: np.ndarray
    curv: np.ndarray | None = None

    @property
    def n_vertices(self) -> int:
        return int(self.coords.shape[0])


@dataclass(frozen=True)
class Mesh:
    """Both hemispheres of one surface type.

    Attributes:
        lh, rh: :class:`HemiMesh`; surf: the surface name; source: where it came from
            (``"fsaverage5"`` or a file path).
        flat: True for a surface drawn in 2-D.
    """

    lh: HemiMesh
    rh: HemiMesh
    surf: str
    source: str
    flat: bool = False

    @property
    def n_vertices(self) -> tuple[int, int]:
        """Vertices per hemisphere, (n_lh, n_rh)."""
        return (self.lh.n_vertices, self.rh.n_vertices)

    @property
    def is_flat(self) -> bool:
        return self.flat

    def hemisphere(self, h: int | str) -> HemiMesh:
        """The mesh of hemisphere ``h`` (0 / "lh" or 1 / "rh")."""
        if h in (0, "lh"):
            return self.lh
        if h in (1, "rh"):
            return self.rh
        raise ValueError(f"hemisphere must be 0/'lh' or 1/'rh', got {h!r}")


@lru_cache(maxsize=2)
def fsaverage5(hemi: str) -> dict[str, HemiMesh]:
    """Every surface of one fsaverage5 hemisphere, offline.

    Args:
        hemi: "lh" or "rh".

    Returns:
        surface name (:data:`FSAVERAGE_SURFACES`) -> :class:`HemiMesh` with float32 coords
        [10242, 3], int32 faces [F, 3] (the flat surface has fewer faces: the medial wall is
        cut), float32 sulc and curv [10242]. Cached: treat the arrays as read-only.
    """
    if hemi not in HEMIS:
        raise ValueError(f"hemi must be 'lh' or 'rh', got {hemi!r}")
    from nilearn import datasets

    side = _NILEARN_HEMI[hemi]
    meshes = datasets.load_fsaverage("fsaverage5")
    morph = {kind: np.asarray(datasets.load_fsaverage_data("fsaverage5", mesh_type="inflated", data_type=kind)
                              .data.parts[side], dtype=np.float32)
             for kind in ("sulcal", "curvature")}
    out = {}
    for surf in FSAVERAGE_SURFACES:
        part = meshes[_NILEARN_SURF[surf]].parts[side]
        out[surf] = HemiMesh(np.asarray(part.coordinates, dtype=np.float32), np.asarray(part.faces, dtype=np.int32),
                             morph["sulcal"], morph["curvature"])
    return out


def flatten_occipital_cap(sphere_coords: np.ndarray, faces: np.ndarray,
                          cap_degrees: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Flatten the occipital cap of a spherical mesh.

    Lambert azimuthal equal-area projection centred on the occipital pole (direction -y),
    seen from behind: screen x follows +x (so the left hemisphere's lateral side is on the
    left, its medial side on the right), screen y follows +z (dorsal up). Units: the sphere's.

    Args:
        sphere_coords: float [n_vertices, 3], a sphere centred on the origin.
        faces: int [n_faces, 3].
        cap_degrees: angular radius of the kept cap around the pole (0 < cap_degrees <= 180).

    Returns:
        coords float64 [n_vertices, 3] with z = 0 (vertices outside the cap keep a position but
        belong to no face), and faces int64 [n_kept_faces, 3]: those with all three vertices in
        the cap.
    """
    if not 0.0 < cap_degrees <= 180.0:
        raise ValueError(f"cap_degrees must be in (0, 180], got {cap_degrees}")
    v = np.asarray(sphere_coords, dtype=np.float64)
    radius = np.linalg.norm(v, axis=1)
    if np.any(radius == 0):
        raise ValueError("sphere coordinates contain the origin; expected a sphere centred on the origin")
    u = v / radius[:, None]
    pole = np.array([0.0, -1.0, 0.0])
    cos_t = np.clip(u @ pole, -1.0, 1.0)
    theta = np.arccos(cos_t)
    tangent = u - cos_t[:, None] * pole
    norm = np.linalg.norm(tangent, axis=1)
    norm[norm == 0] = 1.0
    r = 2.0 * np.sin(theta / 2.0) * radius.mean()
    out = np.zeros_like(v)
    out[:, 0] = r * tangent[:, 0] / norm
    out[:, 1] = r * tangent[:, 2] / norm
    inside = theta <= np.deg2rad(cap_degrees)
    faces = np.asarray(faces, dtype=np.int64)
    keep = inside[faces].all(axis=1)
    return out, faces[keep]
