"""fsaverage meshes for plotting: nilearn's packaged fsaverage5 or a prepared dataset's npz.

``load_mesh(source, surf)`` returns a :class:`Mesh` (both hemispheres of one surface type,
plus sulcal depth for background shading). Sources:

* ``"fsaverage5"``: nilearn's packaged fsaverage5 (10242 vertices per hemisphere, works
  offline; pial, white, inflated, sphere and flat meshes).
* a path to a prepared dataset's ``surfaces/fsaverage.npz`` (or the dataset directory that
  holds it), with keys ``{hemi}_{surf}_coords`` float [n, 3], ``{hemi}_{surf}_faces``
  int [n_faces, 3] and ``{hemi}_sulc`` float [n] (see docs/prepared-dataset.md).

When a source has no flat mesh, ``surf="flat"`` builds one from the sphere with
:func:`flatten_occipital_cap`: a Lambert azimuthal equal-area projection of the cap of the
sphere around the occipital pole, seen from behind (lateral cortex on the outside, medial
cortex facing the other hemisphere, dorsal up). Only faces inside the cap are kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainnet.errors import DataFormatError

HEMIS = ("lh", "rh")
SURFACES = ("pial", "white", "inflated", "sphere", "flat", "occipital")
#: surfaces drawn in 2-D (``occipital`` = the occipital cap of the sphere, flattened)
FLAT_SURFACES = ("flat", "occipital")
PACKAGED_SOURCES = ("fsaverage5",)
_NILEARN_SURF = {"pial": "pial", "white": "white_matter", "inflated": "inflated", "sphere": "sphere", "flat": "flat"}
_NILEARN_HEMI = {"lh": "left", "rh": "right"}


@dataclass(frozen=True)
class HemiMesh:
    """One hemisphere's surface.

    Attributes
    ----------
    coords : array of shape (n_vertices, 3), float64. For flat meshes only x, y are used.
    faces : array of shape (n_faces, 3), int64. Vertex indices of each triangle. A flat mesh
        may leave vertices out of every face (cut or outside the flattened patch).
    sulc : array of shape (n_vertices,), float64. Sulcal depth (positive = deep), for shading.
    """

    coords: np.ndarray
    faces: np.ndarray
    sulc: np.ndarray

    @property
    def n_vertices(self) -> int:
        return int(self.coords.shape[0])


@dataclass(frozen=True)
class Mesh:
    """Both hemispheres of one surface type.

    Attributes
    ----------
    lh, rh : HemiMesh
    surf : str, one of ``SURFACES``.
    source : str, where it came from (``"fsaverage5"`` or a file path).
    """

    lh: HemiMesh
    rh: HemiMesh
    surf: str
    source: str

    @property
    def n_vertices(self) -> tuple[int, int]:
        """Vertices per hemisphere, (n_lh, n_rh)."""
        return (self.lh.n_vertices, self.rh.n_vertices)

    @property
    def is_flat(self) -> bool:
        return self.surf in FLAT_SURFACES

    def hemisphere(self, h: int | str) -> HemiMesh:
        """The mesh of hemisphere ``h`` (0 / "lh" or 1 / "rh")."""
        if h in (0, "lh"):
            return self.lh
        if h in (1, "rh"):
            return self.rh
        raise ValueError(f"hemisphere must be 0/'lh' or 1/'rh', got {h!r}")


def _check_hemi_mesh(coords, faces, sulc, where: str) -> HemiMesh:
    coords = np.asarray(coords, dtype=np.float64)
    faces = np.asarray(faces)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise DataFormatError(where, "coords of shape (n_vertices, 3)", f"shape {coords.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise DataFormatError(where, "integer faces of shape (n_faces, 3)", f"{faces.dtype} {faces.shape}")
    if faces.size and (faces.min() < 0 or faces.max() >= coords.shape[0]):
        raise DataFormatError(
            where, f"face indices in [0, {coords.shape[0]})", f"range [{faces.min()}, {faces.max()}]"
        )
    sulc = np.zeros(coords.shape[0]) if sulc is None else np.asarray(sulc, dtype=np.float64).ravel()
    if sulc.shape[0] != coords.shape[0]:
        raise DataFormatError(where, f"sulc of length {coords.shape[0]}", f"length {sulc.shape[0]}")
    return HemiMesh(coords=coords, faces=faces.astype(np.int64), sulc=sulc)


def flatten_occipital_cap(sphere_coords: np.ndarray, faces: np.ndarray, cap_degrees: float = 100.0):
    """Flatten the occipital cap of a spherical mesh.

    Lambert azimuthal equal-area projection centred on the occipital pole (direction -y),
    seen from behind: screen x follows +x (so the left hemisphere's lateral side is on the
    left, its medial side on the right), screen y follows +z (dorsal up). Units: the sphere's.

    Parameters
    ----------
    sphere_coords : array of shape (n_vertices, 3), sphere centred on the origin.
    faces : array of shape (n_faces, 3).
    cap_degrees : angular radius of the kept cap around the pole (0 < cap_degrees <= 180).

    Returns
    -------
    coords : array of shape (n_vertices, 3); z = 0. Vertices outside the cap keep a position
        but belong to no face.
    faces : array of shape (n_kept_faces, 3), the faces with all three vertices in the cap.
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


def _load_packaged(source: str, surf: str, cap_degrees: float) -> Mesh:
    from nilearn import datasets

    meshes = datasets.load_fsaverage(source)
    sulc_img = datasets.load_fsaverage_data(source, mesh_type="inflated", data_type="sulcal")
    hemis = {}
    for h in HEMIS:
        sulc = sulc_img.data.parts[_NILEARN_HEMI[h]]
        if surf == "occipital":
            part = meshes["sphere"].parts[_NILEARN_HEMI[h]]
            coords, faces = flatten_occipital_cap(part.coordinates, part.faces, cap_degrees)
            hemis[h] = _check_hemi_mesh(coords, faces, sulc, f"nilearn {source} {h} sphere, flattened")
            continue
        part = meshes[_NILEARN_SURF[surf]].parts[_NILEARN_HEMI[h]]
        hemis[h] = _check_hemi_mesh(part.coordinates, part.faces, sulc, f"nilearn {source} {h} {surf}")
    return Mesh(lh=hemis["lh"], rh=hemis["rh"], surf=surf, source=source)


def _load_npz(path: Path, surf: str, cap_degrees: float) -> Mesh:
    if path.is_dir():
        path = path / "surfaces" / "fsaverage.npz"
    if not path.is_file():
        raise DataFormatError(path, "a surfaces npz file (surfaces/fsaverage.npz)", "no such file")
    with np.load(path, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    hemis = {}
    for h in HEMIS:
        sulc = data.get(f"{h}_sulc")
        key = f"{h}_{surf}"
        if surf != "occipital" and f"{key}_coords" in data and f"{key}_faces" in data:
            hemis[h] = _check_hemi_mesh(data[f"{key}_coords"], data[f"{key}_faces"], sulc, f"{path} [{key}]")
        elif surf in FLAT_SURFACES and f"{h}_sphere_coords" in data and f"{h}_sphere_faces" in data:
            coords, faces = flatten_occipital_cap(data[f"{h}_sphere_coords"], data[f"{h}_sphere_faces"], cap_degrees)
            hemis[h] = _check_hemi_mesh(coords, faces, sulc, f"{path} [{h}_sphere, flattened]")
        else:
            wanted = f"{key}_coords and {key}_faces" + (f" (or {h}_sphere_* to flatten)" if surf == "flat" else "")
            raise DataFormatError(path, wanted, f"keys {sorted(data)}")
    return Mesh(lh=hemis["lh"], rh=hemis["rh"], surf=surf, source=str(path))


def load_mesh(source: str | os.PathLike = "fsaverage5", surf: str = "inflated", *, cap_degrees: float = 100.0) -> Mesh:
    """Load both hemispheres of one fsaverage surface.

    Parameters
    ----------
    source : ``"fsaverage5"`` (nilearn's packaged mesh, offline) or a path to a prepared
        dataset's ``surfaces/fsaverage.npz`` (or to the dataset directory).
    surf : one of ``"pial"``, ``"white"``, ``"inflated"``, ``"sphere"``, ``"flat"`` (the source's
        flat patch), ``"occipital"`` (the occipital cap of the sphere, flattened: the visual cortex
        large and undistorted).
    cap_degrees : angular radius of the occipital cap used for ``surf="occipital"`` or when ``surf="flat"`` must be
        built from the sphere (the source has no flat mesh).

    Returns
    -------
    Mesh
    """
    if surf not in SURFACES:
        raise ValueError(f"surf must be one of {SURFACES}, got {surf!r}")
    if isinstance(source, str) and source in PACKAGED_SOURCES:
        return _load_packaged(source, surf, cap_degrees)
    path = Path(source)
    if isinstance(source, str) and not path.suffix and not path.exists():
        raise ValueError(
            f"unknown mesh source {source!r}: use one of {PACKAGED_SOURCES} (packaged with nilearn) "
            "or the path to a prepared dataset's surfaces/fsaverage.npz"
        )
    return _load_npz(path, surf, cap_degrees)
