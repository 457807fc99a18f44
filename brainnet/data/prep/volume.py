"""The voxel part of a prepared subject: plan (ROI volumes, grid, NC, labels) and per-session reading.

Voxels are the union of NSD's ``func1mm/roi/thalamus.nii.gz`` and ``MTL.nii.gz`` (label > 0), in
flat C order of the subject's func1mm grid. Every betas file of every session and the ncsnr map must
share that grid (shape and affine); :func:`plan_volume` checks the headers, so a bad input fails
before anything is written. :func:`read_volume_session` streams one session's voxels
(:func:`brainnet.data.formats.nifti.read_masked`, percent signal change = int16 / 300); a voxel whose
values are all 0 in a session lies outside that session's brain mask and becomes NaN (so the writer
marks it invalid like a NaN vertex).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainnet.data.formats import nifti, nsd
from brainnet.data.noise_ceiling import noise_ceiling
from brainnet.data.prep.spaces import DERIVED_GROUPS
from brainnet.errors import DataFormatError

#: The ROI volumes whose labelled voxels form the ``hip_func1mm`` units.
VOLUME_ATLASES: tuple[str, ...] = ("thalamus", "MTL")


@dataclass
class VolumePlan:
    """One subject's voxels.

    Attributes:
        grid: (X, Y, Z); affine: float64 [4, 4] voxel -> scanner mm.
        index: int64 [Nv] flat C-order voxel indices; scanner: float32 [Nv, 3] voxel centres in mm.
        noise_ceiling: float32 [Nv] (fraction, 3 repeats) from ``ncsnr.nii.gz``.
        rois: {atlas: int16 [Nv], atlas + "__names": str array} (thalamus, MTL, derived groups).
        betas: per session the 4-D betas path; reference: the ROI file the grid comes from.
    """

    grid: tuple[int, int, int]
    affine: np.ndarray
    index: np.ndarray
    scanner: np.ndarray
    noise_ceiling: np.ndarray
    rois: dict[str, np.ndarray]
    betas: list[Path]
    reference: Path

    @property
    def n_voxels(self) -> int:
        return int(self.index.size)


def plan_volume(name: str, layout: nsd.NSDLayout, beta_version: str, session_trials: list[int],
                sources: list[Path]) -> VolumePlan:
    """Read and cross-check one subject's ROI volumes, betas headers and ncsnr.

    Args:
        session_trials: trials of each session (1-based order), from the design.
        sources: list the files read are appended to (the input fingerprint).
    """
    labels, grid, affine, reference = {}, None, None, None
    for atlas in VOLUME_ATLASES:
        path = layout.roi_volume(name, atlas)
        labels[atlas], info = nifti.read_labels(path, len(nsd.FUNC1MM_ROI_NAMES[atlas]), grid, affine, reference)
        grid, affine, reference = (info.grid, info.affine, path) if grid is None else (grid, affine, reference)
        sources.append(path)
    flat = {a: v.reshape(-1) for a, v in labels.items()}
    index = np.flatnonzero(np.logical_or.reduce([v > 0 for v in flat.values()])).astype(np.int64)
    ijk = np.stack(np.unravel_index(index, grid), axis=1)
    scanner = (np.c_[ijk, np.ones(index.size)] @ affine.T)[:, :3].astype(np.float32)
    betas = []
    for s, n_trials in enumerate(session_trials, start=1):
        path = layout.volume_betas(name, s, beta_version)
        info = nifti.nifti_info(path)
        nifti.check_grid(info, grid, affine, reference)
        if len(info.shape) != 4 or info.n_frames != n_trials:
            raise DataFormatError(path, f"4-D betas with {n_trials} frames (the session's trials)",
                                  f"shape {info.shape}")
        betas.append(path)
        sources.append(path)
    npath = layout.volume_ncsnr(name, beta_version)
    ncsnr = nifti.read_masked(npath, index, grid, affine, n_frames=1, reference=reference)[:, 0]
    sources.append(npath)
    rois: dict[str, np.ndarray] = {}
    for atlas in VOLUME_ATLASES:
        rois[atlas] = flat[atlas][index].astype(np.int16)
        rois[f"{atlas}__names"] = np.array(("Unknown",) + nsd.FUNC1MM_ROI_NAMES[atlas], dtype=str)
    for group, (atlas, members) in DERIVED_GROUPS.items():
        codes = [nsd.FUNC1MM_ROI_NAMES[atlas].index(m) + 1 for m in members]
        rois[group] = np.isin(rois[atlas], codes).astype(np.int16)
        rois[f"{group}__names"] = np.array(["Unknown", group], dtype=str)
    return VolumePlan(grid=tuple(grid), affine=affine, index=index, scanner=scanner,
                      noise_ceiling=noise_ceiling(ncsnr), rois=rois, betas=betas, reference=reference)


def read_volume_session(plan: VolumePlan, session: int, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` (float32 [Nv, T]) with the voxels of session ``session`` (0-based), percent signal
    change; voxels all 0 in the session -> NaN. Returns ``out``."""
    nifti.read_masked(plan.betas[session], plan.index, plan.grid, plan.affine, n_frames=out.shape[1],
                      scale=nsd.FUNC1MM_BETA_SCALE, out=out, reference=plan.reference)
    empty = ~out.any(axis=1)
    out[empty] = np.nan
    return out
