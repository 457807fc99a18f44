"""Tables that describe a prepared dataset (for notebooks and reports)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from brainnet.data.layout import SPLIT_CODES
from brainnet.data.prepared import PreparedDataset

#: The atlases :func:`combined_rois` merges by default (the Algonauts ROI classes but streams).
DEFAULT_ATLASES: tuple[str, ...] = ("prf-visualrois", "floc-faces", "floc-bodies", "floc-places", "floc-words")


def dataset_summary(data: str | Path | PreparedDataset) -> pd.DataFrame:
    """One row per subject: trial, image and vertex counts, split sizes, noise ceiling.

    Columns: trials, images (unique), vertices (selected surface vertices), challenge_vertices,
    sessions, ``<split>_trials`` and ``<split>_images`` for train / val / test / predict, median_nc,
    mean_nc (noise ceiling as a fraction, over valid selected vertices; NaN on a dataset without
    one). A dataset with func1mm voxels (``fship``, ``hip_func1mm``) adds voxels, voxel_median_nc
    and voxel_mean_nc (the same over its valid voxels); the vertex columns ignore the voxels.
    """
    data = PreparedDataset.open(data)
    rows = {}
    for name in data.subjects:
        subj = data.subject(name)
        t = subj.trials
        voxel = subj.is_voxel
        valid = subj.vertex_valid & ~voxel
        nc = subj.noise_ceiling if data.has("noise_ceiling") else np.full(subj.n_vertices, np.nan, np.float32)
        row = {
            "trials": subj.n_trials,
            "images": int(np.unique(t["image"]).size),
            "vertices": subj.n_surface,
            "challenge_vertices": int(subj.challenge.sum()),
            "sessions": int(np.unique(t["session"]).size),
        }
        for split, code in SPLIT_CODES.items():
            sel = t["split"] == code
            row[f"{split}_trials"] = int(sel.sum())
            row[f"{split}_images"] = int(np.unique(t["image"][sel]).size)
        row["median_nc"] = float(np.median(nc[valid])) if valid.any() else float("nan")
        row["mean_nc"] = float(np.mean(nc[valid])) if valid.any() else float("nan")
        if voxel.any():
            valid_voxels = subj.vertex_valid & voxel
            row["voxels"] = int(voxel.sum())
            row["voxel_median_nc"] = float(np.median(nc[valid_voxels])) if valid_voxels.any() else float("nan")
            row["voxel_mean_nc"] = float(np.mean(nc[valid_voxels])) if valid_voxels.any() else float("nan")
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def run_table(data: str | Path | PreparedDataset, subject: str, session: int, run: int) -> pd.DataFrame:
    """The trials of one run: trial-table columns plus the named behaviour features.

    Returns a DataFrame indexed by the subject's trial row, with columns session, run, trial,
    slot, nsd_id, image, split, then the 35 behaviour columns named as in the manifest.
    """
    data = PreparedDataset.open(data)
    data.require("trial_order", "run_table")
    subj = data.subject(subject)
    t = subj.trials
    rows = np.flatnonzero((t["session"] == session) & (t["run"] == run))
    if rows.size == 0:
        raise ValueError(f"{subj.name} has no trials in session {session}, run {run}")
    frame = pd.DataFrame({k: np.asarray(t[k])[rows] for k in t}, index=rows)
    behaviour = subj.behaviour[rows]
    return pd.concat([frame, pd.DataFrame(behaviour, index=rows, columns=list(data.behaviour_columns))], axis=1)


def run_memory_index(data: str | Path | PreparedDataset, subject: str, session: int, run: int) -> np.ndarray:
    """Memory index rows of one run: int32 [n_trials_in_run, 33] (column k = k slots back)."""
    data = PreparedDataset.open(data)
    table = run_table(data, subject, session, run)
    return np.asarray(data.subject(subject).memory_index[table.index.to_numpy()])


def combined_rois(data: str | Path | PreparedDataset, subject: str,
                  atlases: tuple[str, ...] = DEFAULT_ATLASES) -> tuple[np.ndarray, list[str]]:
    """Merge several ROI atlases of a subject into one label array.

    Returns ``labels`` int16 [V] (0 = none; where atlases overlap the later one wins) and
    ``names`` with ``names[code]`` for every code (``names[0] == 'Unknown'``).
    """
    subj = PreparedDataset.open(data).subject(subject)
    missing = [a for a in atlases if a not in subj.rois]
    if missing:
        raise KeyError(f"atlases {missing} not in {subj.name}'s ROIs (have {sorted(subj.rois)})")
    names = ["Unknown"]
    labels = np.zeros(subj.n_vertices, dtype=np.int16)
    for atlas in atlases:
        codes, atlas_names = subj.rois[atlas]
        for code in np.unique(codes[codes > 0]):
            names.append(str(atlas_names[code]))
            labels[codes == code] = len(names) - 1
    return labels, names
