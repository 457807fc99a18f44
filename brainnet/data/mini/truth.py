"""nsd-mini's planted ground truth: its constants and the reader of ``ground_truth.npz``.

The generator (:mod:`brainnet.data.mini.generate`, :mod:`brainnet.data.mini.cortex`) writes
what is defined here; :mod:`brainnet.analysis.truth` and :mod:`brainnet.analysis.planted`
compare models against it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["GROUND_TRUTH_KEYS", "KIND_ANSWER", "KIND_MEMORY", "KIND_NAMES", "KIND_NONE", "KIND_VISUAL",
           "MESH_KEYS", "SUBJECT_KEYS", "read_truth"]

#: Planted vertex kinds (``{hemi}_kind``).
KIND_NONE, KIND_VISUAL, KIND_MEMORY, KIND_ANSWER = 0, 1, 2, 3
KIND_NAMES: dict[int, str] = {KIND_NONE: "none", KIND_VISUAL: "visual", KIND_MEMORY: "memory",
                              KIND_ANSWER: "answer"}

#: Keys of ground_truth.npz ({hemi} in lh, rh; {subj} in subj01, ...), with shapes. ``{subj}_vol_<name>``
#: arrays are over the subject's func1mm grid (:mod:`brainnet.data.mini.volume`); a prepared voxel with
#: flat C-order ``index`` reads ``arr.reshape(-1)[index]``.
GROUND_TRUTH_KEYS: dict[str, str] = {
    "{hemi}_mask": "bool [V] nsdgeneral-like mask",
    "{hemi}_challenge": "bool [V] nsdgeneral + RSC (Algonauts mask before dropping NaN vertices)",
    "{hemi}_rf_x": "float32 [V] RF centre x in [-1, 1] (grid_sample: right)",
    "{hemi}_rf_y": "float32 [V] RF centre y in [-1, 1] (grid_sample: down)",
    "{hemi}_rf_size": "float32 [V] RF Gaussian sigma (normalised units)",
    "{hemi}_hierarchy": "float32 [V] 0 at the occipital pole, 1 at the mask border (>1 outside)",
    "{hemi}_kind": "int8 [V] 0 none, 1 visual, 2 memory, 3 answer",
    "{hemi}_category_mix": "float32 [V] weight of category content vs energy in the visual drive",
    "{hemi}_category_weights": "float32 [V, 4] preference over CATEGORIES (rows sum to 1)",
    "memory_lag_profile": "float32 [33] weight of the image k slots back (k = 0..32, entry 0 = 0)",
    "memory_feature": "float32 [n_pool] remembered image feature (z-scored face+body coverage)",
    "image_categories": "float32 [n_pool, 4] fraction of each image covered by each category",
    "image_objects": "float32 [n_pool, max_objects, 4] (category, cx, cy, size) of each drawn object "
                     "(NaN rows pad); SceneObject fields, so category_maps can be recomputed",
    "{subj}_slots": "int64 [n_sessions, 12, 75] 0-based pool id per slot, -1 blank",
    "{subj}_{hemi}_ncsnr_planted": "float32 [V] planted image-locked ncsnr",
    "{subj}_{hemi}_ncsnr_written": "float32 [V] ncsnr computed from the betas (= ncsnr.mgh)",
    "{subj}_{hemi}_sigma_image": "float32 [V] image-locked amplitude (noise units)",
    "{subj}_{hemi}_sigma_memory": "float32 [V] memory amplitude (noise units)",
    "{subj}_{hemi}_sigma_answer": "float32 [V] answer amplitude (noise units)",
    "{subj}_{hemi}_nan_vertices": "int64 [k] vertices whose betas are all NaN",
    "{subj}_{hemi}_ncsnr_written_b2": "float32 [V] ncsnr of the betas_fithrf (b2) betas (when written)",
    "hippocampus_lag_profile": "float32 [33] lag profile of the hippocampal voxels (peak k = 12; when a volume "
                               "is written)",
    "{subj}_hippocampus_drive": "float32 [n_trials] memory drive of the hippocampal voxels (standardised)",
    "{subj}_vol_affine": "float64 [4, 4] voxel (i, j, k) -> scanner mm of the subject's func1mm grid",
    "{subj}_vol_brain": "bool [X, Y, Z] brain voxels (betas 0 outside)",
    "{subj}_vol_thalamus": "int16 [X, Y, Z] thalamus labels 1-5 (= roi/thalamus.nii.gz)",
    "{subj}_vol_MTL": "int16 [X, Y, Z] MTL labels 1-10 (= roi/MTL.nii.gz)",
    "{subj}_vol_kind": "int8 [X, Y, Z] 0 none, 1 visual (LGN), 2 memory (hippocampus)",
    "{subj}_vol_rf_x": "float32 [X, Y, Z] RF centre x of LGN voxels (0 elsewhere)",
    "{subj}_vol_rf_y": "float32 [X, Y, Z] RF centre y of LGN voxels (0 elsewhere)",
    "{subj}_vol_rf_size": "float32 [X, Y, Z] RF sigma of LGN voxels (1 elsewhere)",
    "{subj}_vol_sigma_image": "float32 [X, Y, Z] image-locked amplitude (noise units)",
    "{subj}_vol_sigma_memory": "float32 [X, Y, Z] memory amplitude (noise units)",
    "{subj}_vol_ncsnr_planted": "float32 [X, Y, Z] planted image-locked ncsnr",
    "{subj}_vol_ncsnr_written": "float32 [X, Y, Z] ncsnr computed from the b3 voxel betas (= ncsnr.nii.gz)",
    "{subj}_vol_ncsnr_written_b2": "float32 [X, Y, Z] the same for the b2 voxel betas",
    "{subj}_answer_drive": "float32 [n_trials] the answer drive of each trial (standardised)",
    "{subj}_memory_drive": "float32 [n_trials] the memory drive of each trial (standardised)",
}


def _per_vertex(prefix: str) -> tuple[str, ...]:
    """Names of the ``prefix<name>`` keys holding one value per mesh vertex (shape ``[V]``)."""
    return tuple(key[len(prefix):] for key, desc in GROUND_TRUTH_KEYS.items()
                 if key.startswith(prefix) and "{" not in key[len(prefix):] and desc.split()[1] == "[V]")


#: Per-hemisphere arrays [V] over the mesh: ``{hemi}_<name>``.
MESH_KEYS: tuple[str, ...] = _per_vertex("{hemi}_")
#: Per-subject and hemisphere arrays [V] over the mesh: ``{subj}_{hemi}_<name>``.
SUBJECT_KEYS: tuple[str, ...] = _per_vertex("{subj}_{hemi}_")


def read_truth(path: str | Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Arrays of ``ground_truth.npz`` (a folder holding it is accepted too).

    Args:
        path: the file or the nsd-mini folder.
        keys: the keys to read (default: all); a missing one raises KeyError.

    Raises:
        FileNotFoundError: no ``ground_truth.npz`` there.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "ground_truth.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected nsd-mini's ground_truth.npz "
                                "(brainnet.data.mini.ensure_mini(...).ground_truth)")
    with np.load(path) as z:
        missing = [k for k in keys or () if k not in z.files]
        if missing:
            raise KeyError(f"{path} lacks {missing}")
        return {k: z[k] for k in (keys or z.files)}
