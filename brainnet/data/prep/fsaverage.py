"""The fsaverage surfaces of a prepared dataset: from a FreeSurfer subject folder or nilearn's fetcher.

* :func:`read_fsaverage_folder`: sphere, inflated, white, sulc (and the flat patch when present)
  of a FreeSurfer ``fsaverage`` folder (``$FREESURFER_HOME/subjects/fsaverage`` or NSD's
  ``nsddata/freesurfer/fsaverage``). The NSD preparation reads NSD's copy with it.
* :func:`fsaverage_surfaces`: what the Algonauts-only preparation uses: the folder when given,
  else nilearn's :func:`nilearn.datasets.fetch_surf_fsaverage` at the resolution the ROI masks
  imply (online only; it caches), else a :class:`~brainnet.errors.DataFormatError` saying what
  to provide.

Both return the ``surfaces/fsaverage.npz`` arrays (``{hemi}_{surf}_coords`` float32 [n, 3],
``{hemi}_{surf}_faces`` int32 [F, 3], ``{hemi}_sulc`` float32 [n]) and record every file read in
``sources`` (for the input fingerprint).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from brainnet.data.formats import freesurfer as fs
from brainnet.errors import DataFormatError

log = logging.getLogger(__name__)

HEMIS: tuple[str, str] = ("lh", "rh")
#: Surfaces stored in ``surfaces/fsaverage.npz`` (the sphere first: it fixes the vertex count).
SURFACES: tuple[str, ...] = ("sphere", "inflated", "white")
#: Vertices per hemisphere -> nilearn's name of the fsaverage mesh of that resolution.
MESH_NAMES: dict[int, str] = {642: "fsaverage3", 2562: "fsaverage4", 10242: "fsaverage5", 40962: "fsaverage6",
                              163842: "fsaverage"}
#: Where nilearn downloads fsaverage meshes from (probed before trying).
NILEARN_HOST = "osf.io"
#: ``manifest.json`` ``sources.fsaverage`` of surfaces from nilearn.
NILEARN_SOURCE = "nilearn:fsaverage"
_NILEARN_KEYS = {"sphere": "sphere", "inflated": "infl", "white": "white"}
_NILEARN_SIDE = {"lh": "left", "rh": "right"}


def read_fsaverage_folder(folder: str | Path, sources: list[Path],
                          expect: tuple[int, int] | None = None) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
    """Surfaces of a FreeSurfer fsaverage folder and its vertices per hemisphere (lh, rh).

    ``expect``: vertices per hemisphere the caller needs; the sphere of another size raises
    :class:`DataFormatError` naming it. Every file read is appended to ``sources``.
    """
    where = fs.FsaverageFolder(Path(folder))
    out: dict[str, np.ndarray] = {}
    sizes = []
    for h, hemi in enumerate(HEMIS):
        path = where.surface(hemi, "sphere")
        coords, faces = fs.read_surface(path, None if expect is None else expect[h])
        n = coords.shape[0]
        sizes.append(n)
        out[f"{hemi}_sphere_coords"], out[f"{hemi}_sphere_faces"] = coords, faces
        sources.append(path)
        for surf in SURFACES[1:]:
            path = where.surface(hemi, surf)
            out[f"{hemi}_{surf}_coords"], out[f"{hemi}_{surf}_faces"] = fs.read_surface(path, n)
            sources.append(path)
        path = where.surface(hemi, "sulc")
        out[f"{hemi}_sulc"] = fs.read_morph(path, n)
        sources.append(path)
        patch = where.flat_patch(hemi)
        if patch.is_file():
            flat = fs.read_patch(patch, n)
            inside = ~np.isnan(flat[:, 0])
            out[f"{hemi}_flat_coords"] = flat
            out[f"{hemi}_flat_faces"] = faces[inside[faces].all(axis=1)]
            sources.append(patch)
    return out, (sizes[0], sizes[1])


def offline_advice(n_vertices: int) -> str:
    """What to provide when the fsaverage surfaces cannot be fetched (the error's 'expected' text)."""
    mesh = MESH_NAMES.get(n_vertices, "fsaverage")
    return (f"a FreeSurfer {mesh} folder ({n_vertices} vertices per hemisphere, as the roi_masks; the Algonauts "
            f"2023 release has no surfaces): pass --fsaverage-dir $FREESURFER_HOME/subjects/{mesh} or NSD's copy "
            "<NSD root>/nsddata/freesurfer/fsaverage (Python: prepare(..., fsaverage_dir=...)), or run once with "
            f"network access so that nilearn downloads and caches {mesh}")


def _fetch_nilearn(mesh: str):
    """nilearn's fetcher (a seam for tests): a Bunch of GIfTI paths (sphere_left, infl_left, ...)."""
    from nilearn.datasets import fetch_surf_fsaverage

    return fetch_surf_fsaverage(mesh=mesh)


def _gifti_arrays(path: Path) -> list[np.ndarray]:
    import nibabel as nib

    try:
        return [np.asarray(d.data) for d in nib.load(str(path)).darrays]
    except Exception as exc:
        raise DataFormatError(path, "a GIfTI file", f"unreadable ({type(exc).__name__}: {exc})") from exc


def read_nilearn_fsaverage(mesh_sizes: tuple[int, int], sources: list[Path]) -> dict[str, np.ndarray]:
    """The surfaces of nilearn's fsaverage mesh with ``mesh_sizes`` vertices per hemisphere (downloads
    on first use; nilearn caches). Raises :class:`DataFormatError` when a file has another size."""
    meshes = {MESH_NAMES[n] for n in mesh_sizes}
    if len(meshes) != 1:
        raise DataFormatError("roi_masks", "both hemispheres on the same fsaverage mesh", f"{mesh_sizes} vertices")
    bunch = _fetch_nilearn(meshes.pop())
    out: dict[str, np.ndarray] = {}
    for h, hemi in enumerate(HEMIS):
        n = mesh_sizes[h]
        side = _NILEARN_SIDE[hemi]
        for surf in SURFACES:
            path = Path(bunch[f"{_NILEARN_KEYS[surf]}_{side}"])
            arrays = _gifti_arrays(path)
            coords = next((a for a in arrays if a.ndim == 2 and a.dtype.kind == "f"), None)
            faces = next((a for a in arrays if a.ndim == 2 and a.dtype.kind in "iu"), None)
            if coords is None or faces is None or coords.shape != (n, 3) or faces.shape[1:] != (3,):
                found = "no mesh" if coords is None or faces is None else f"coords {coords.shape}"
                raise DataFormatError(path, f"a mesh of {n} vertices (coords [{n}, 3], faces [F, 3])", found)
            out[f"{hemi}_{surf}_coords"] = coords.astype(np.float32)
            out[f"{hemi}_{surf}_faces"] = faces.astype(np.int32)
            sources.append(path)
        path = Path(bunch[f"sulc_{side}"])
        sulc = np.concatenate([a.reshape(-1) for a in _gifti_arrays(path)]).astype(np.float32)
        if sulc.shape != (n,):
            raise DataFormatError(path, f"{n} sulcal depth values", f"shape {sulc.shape}")
        out[f"{hemi}_sulc"] = sulc
        sources.append(path)
    return out


def fsaverage_surfaces(fsaverage_dir: str | Path | None, mask_sizes: tuple[int, int], mask_paths: tuple[Path, Path],
                       sources: list[Path]) -> tuple[dict[str, np.ndarray], str]:
    """Surfaces whose meshes match the Algonauts masks, and where they came from.

    Args:
        fsaverage_dir: a FreeSurfer fsaverage folder, or None (nilearn's fetcher when online).
        mask_sizes: vertices per hemisphere of the ``{lh,rh}.all-vertices_fsaverage_space.npy`` masks.
        mask_paths: those masks (named in errors).

    Returns:
        (surfaces, source): the ``surfaces/fsaverage.npz`` arrays, and the folder (resolved) or
        :data:`NILEARN_SOURCE`.

    Raises:
        DataFormatError: a mask whose length is no fsaverage mesh (or not the given folder's),
            an unreadable surface, or no folder while offline (the message says what to provide).
    """
    if fsaverage_dir is not None:
        folder = Path(fsaverage_dir).expanduser().resolve()
        if not folder.is_dir():
            raise DataFormatError(folder, "a FreeSurfer fsaverage folder (holding surf/)", "no such folder")
        surfaces, sizes = read_fsaverage_folder(folder, sources)
        for h, hemi in enumerate(HEMIS):
            if sizes[h] != mask_sizes[h]:
                raise DataFormatError(mask_paths[h], f"{sizes[h]} values (the vertices of {hemi}.sphere in {folder})",
                                      f"{mask_sizes[h]} values")
        return surfaces, str(folder)
    for h in range(2):
        if mask_sizes[h] not in MESH_NAMES:
            raise DataFormatError(mask_paths[h], "the vertex count of an fsaverage mesh ("
                                  + ", ".join(f"{n} {m}" for n, m in MESH_NAMES.items()) + ")",
                                  f"{mask_sizes[h]} values")
    from brainnet.net import network_available, offline_by_env

    if offline_by_env() or not network_available(NILEARN_HOST):
        reason = "offline mode is set (BRAINNET_OFFLINE)" if offline_by_env() else f"{NILEARN_HOST} cannot be reached"
        raise DataFormatError("fsaverage surfaces", offline_advice(mask_sizes[0]),
                              f"no folder given, and {reason}, so nilearn cannot download them")
    log.info("fetching fsaverage surfaces (%s) with nilearn", MESH_NAMES[mask_sizes[0]])
    return read_nilearn_fsaverage(mask_sizes, sources), NILEARN_SOURCE
