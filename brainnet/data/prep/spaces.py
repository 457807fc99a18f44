"""The unit spaces ``prepare`` builds and the beta versions it reads: names and aliases, defined once.

* ``fsaverage``: fsaverage vertices selected by the Algonauts mask (optionally extended by noise
  ceiling, see ``PrepareConfig.nc_threshold``);
* ``full_fsaverage``: every fsaverage vertex, no noise-ceiling filter;
* ``hip_func1mm``: subject-space 1 mm voxels inside NSD's thalamus and MTL ROI volumes;
* ``fship``: the ``fsaverage`` selection (same options, ``nc_threshold="all"`` for every vertex)
  followed by the ``hip_func1mm`` voxels on one unit axis.

ROI atlases of the voxels (``rois.npz``): ``thalamus`` and ``MTL`` (NSD's label codes and names),
plus one binary atlas per derived group of :data:`DERIVED_GROUPS` (code 1 = in the group, names
``["Unknown", <group>]``), so ``subject.roi_labels("H")[0] == 1`` is the group's mask. Surface
units carry 0 in the voxel atlases and voxels 0 in the surface atlases.
"""

from __future__ import annotations

SPACES: tuple[str, ...] = ("fsaverage", "full_fsaverage", "hip_func1mm", "fship")
#: Beta-version aliases -> the NSD betas folder name (the folder names map to themselves).
BETA_VERSIONS: dict[str, str] = {"b3": "betas_fithrf_GLMdenoise_RR", "b2": "betas_fithrf", "b1": "betas_assumehrf"}
#: Voxel groups made of labels of the ROI volumes: name -> (atlas, label names).
DERIVED_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "HHHB": ("MTL", ("Sub", "CA1", "CA2", "CA3", "DG")),
    "H": ("MTL", ("Sub", "CA1", "CA2", "CA3", "DG", "HT")),
    "PrC": ("MTL", ("area35", "area36")),
    "pulvinar": ("thalamus", ("Vpu", "DLpu", "DMpu")),
}


def beta_folder(version: str) -> str:
    """``"b3"`` / ``"b2"`` / ``"b1"`` or a folder name -> the folder name (ValueError otherwise)."""
    folders = set(BETA_VERSIONS.values())
    if version in folders:
        return version
    if version in BETA_VERSIONS:
        return BETA_VERSIONS[version]
    raise ValueError(f"beta_version must be one of {sorted(BETA_VERSIONS)} or {sorted(folders)}, got {version!r}")


def has_surface(space: str) -> bool:
    """The space holds fsaverage vertices."""
    return space in ("fsaverage", "full_fsaverage", "fship")


def has_volume(space: str) -> bool:
    """The space holds func1mm voxels (after the vertices)."""
    return space in ("hip_func1mm", "fship")
