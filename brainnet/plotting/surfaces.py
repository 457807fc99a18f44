"""fsaverage meshes for plotting: fsaverage5 (shipped with nilearn) or a prepared dataset's surfaces.

``load_mesh(source, surf)`` returns a :class:`~brainnet.data.surface.Mesh` (both hemispheres of
one surface type, plus sulcal depth for background shading). Sources:

* ``"fsaverage5"``: :func:`brainnet.data.surface.fsaverage5` (10242 vertices per hemisphere,
  works offline; pial, white, inflated, sphere and flat meshes).
* a :class:`~brainnet.data.PreparedDataset` or its directory (its :attr:`surfaces`), or a path
  to a surfaces ``.npz`` with keys ``{hemi}_{surf}_coords`` float [n, 3], ``{hemi}_{surf}_faces``
  int [n_faces, 3] and ``{hemi}_sulc`` float [n] (see docs/prepared-dataset.md).

When a source has no flat mesh, ``surf="flat"`` builds one from the sphere with
:func:`~brainnet.data.surface.flatten_occipital_cap`: a Lambert azimuthal equal-area projection
of the cap of the sphere around the occipital pole, seen from behind (lateral cortex on the
outside, medial cortex facing the other hemisphere, dorsal up). Only faces inside the cap are kept.
The mesh types and the flattening live in :mod:`brainnet.data.surface`; this module picks the
surface to draw.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from brainnet.data import layout
from brainnet.data.surface import HEMIS, HemiMesh, Mesh, flatten_occipital_cap, fsaverage5
from brainnet.errors import DataFormatError

__all__ = ["FLAT_SURFACES", "SURFACES", "HemiMesh", "Mesh", "flatten_occipital_cap", "load_mesh"]

SURFACES = ("pial", "white", "inflated", "sphere", "flat", "occipital")
#: surfaces drawn in 2-D (``occipital`` = the occipital cap of the sphere, flattened)
FLAT_SURFACES = ("flat", "occipital")
PACKAGED_SOURCES = ("fsaverage5",)


def _check_hemi_mesh(coords, faces, sulc, where: str) -> HemiMesh:
    """A plotting mesh: float64 coords [n, 3], int64 faces [f, 3], float64 sulc [n] (zeros if None)."""
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


def _load_packaged(source: str, surf: str, cap_degrees: float) -> Mesh:
    hemis = {}
    for h in HEMIS:
        meshes = fsaverage5(h)
        sulc = meshes["sphere"].sulc
        if surf == "occipital":
            coords, faces = flatten_occipital_cap(meshes["sphere"].coords, meshes["sphere"].faces, cap_degrees)
            hemis[h] = _check_hemi_mesh(coords, faces, sulc, f"{source} {h} sphere, flattened")
        else:
            hemis[h] = _check_hemi_mesh(meshes[surf].coords, meshes[surf].faces, sulc, f"{source} {h} {surf}")
    return Mesh(lh=hemis["lh"], rh=hemis["rh"], surf=surf, source=source, flat=surf in FLAT_SURFACES)


def _surface_arrays(source) -> tuple[dict[str, np.ndarray], str]:
    """Arrays of a surfaces npz: from a PreparedDataset, its directory, or an npz file."""
    from brainnet.data.prepared import PreparedDataset

    if isinstance(source, PreparedDataset):
        return source.surfaces, str(source.root)
    path = Path(source)
    if path.is_dir():
        if (path / layout.MANIFEST).is_file():
            return PreparedDataset(path).surfaces, str(path)
        path = path / layout.SURFACES  # a dataset folder without a manifest (not finished, or hand-made)
    if not path.is_file():
        raise DataFormatError(path, "a surfaces npz file (a prepared dataset's surfaces)", "no such file")
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}, str(path)


def _load_npz(source, surf: str, cap_degrees: float) -> Mesh:
    data, where = _surface_arrays(source)
    hemis = {}
    for h in HEMIS:
        sulc = data.get(f"{h}_sulc")
        key = f"{h}_{surf}"
        if surf != "occipital" and f"{key}_coords" in data and f"{key}_faces" in data:
            hemis[h] = _check_hemi_mesh(data[f"{key}_coords"], data[f"{key}_faces"], sulc, f"{where} [{key}]")
        elif surf in FLAT_SURFACES and f"{h}_sphere_coords" in data and f"{h}_sphere_faces" in data:
            coords, faces = flatten_occipital_cap(data[f"{h}_sphere_coords"], data[f"{h}_sphere_faces"], cap_degrees)
            hemis[h] = _check_hemi_mesh(coords, faces, sulc, f"{where} [{h}_sphere, flattened]")
        else:
            wanted = f"{key}_coords and {key}_faces" + (f" (or {h}_sphere_* to flatten)" if surf == "flat" else "")
            raise DataFormatError(where, wanted, f"keys {sorted(data)}")
    return Mesh(lh=hemis["lh"], rh=hemis["rh"], surf=surf, source=where, flat=surf in FLAT_SURFACES)


def load_mesh(source=PACKAGED_SOURCES[0], surf: str = "inflated", *, cap_degrees: float = 100.0) -> Mesh:
    """Load both hemispheres of one fsaverage surface.

    Args:
        source: ``"fsaverage5"`` (shipped with nilearn, offline), a
            :class:`~brainnet.data.PreparedDataset` or its directory, or a path to a surfaces
            ``.npz`` (as a prepared dataset stores them).
        surf: one of ``"pial"``, ``"white"``, ``"inflated"``, ``"sphere"``, ``"flat"`` (the
            source's flat patch), ``"occipital"`` (the occipital cap of the sphere, flattened:
            the visual cortex large and undistorted).
        cap_degrees: angular radius of the occipital cap used for ``surf="occipital"`` or when
            ``surf="flat"`` must be built from the sphere (the source has no flat mesh).

    Returns:
        :class:`~brainnet.data.surface.Mesh` with float64 coords, int64 faces, float64 sulc.
    """
    if surf not in SURFACES:
        raise ValueError(f"surf must be one of {SURFACES}, got {surf!r}")
    if isinstance(source, str) and source in PACKAGED_SOURCES:
        return _load_packaged(source, surf, cap_degrees)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if isinstance(source, str) and not path.suffix and not path.exists():
            raise ValueError(
                f"unknown mesh source {source!r}: use one of {PACKAGED_SOURCES} (shipped with nilearn), "
                "a prepared dataset or the path to its surfaces npz"
            )
    return _load_npz(source, surf, cap_degrees)
