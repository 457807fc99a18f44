"""Tables that describe a prepared dataset (for notebooks and reports)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from brainnet.data.dataset import load_prepared


def dataset_summary(root: str | Path) -> pd.DataFrame:
    """One row per subject: trial, image and vertex counts, split sizes, noise ceiling.

    Columns: trials, images (unique), vertices (selected), challenge_vertices, sessions,
    ``<split>_trials`` and ``<split>_images`` for train / val / test / predict, median_nc, mean_nc
    (noise ceiling as a fraction, over valid selected vertices).
    """
    info = load_prepared(root)
    codes = info.manifest["split_codes"]
    rows = {}
    for name, subj in info.subjects.items():
        t, v = subj.trials, subj.vertices
        nc = np.load(Path(root) / name / "noise_ceiling.npy")
        valid = np.load(Path(root) / name / "vertex_valid.npy")
        row = {
            "trials": subj.n_trials,
            "images": int(np.unique(t["image"]).size),
            "vertices": subj.n_vertices,
            "challenge_vertices": int(np.asarray(v["challenge"]).sum()),
            "sessions": int(np.unique(t["session"]).size),
        }
        for split, code in sorted(codes.items(), key=lambda kv: kv[1]):
            sel = t["split"] == code
            row[f"{split}_trials"] = int(sel.sum())
            row[f"{split}_images"] = int(np.unique(t["image"][sel]).size)
        row["median_nc"] = float(np.median(nc[valid])) if valid.any() else float("nan")
        row["mean_nc"] = float(np.mean(nc[valid])) if valid.any() else float("nan")
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def run_table(root: str | Path, subject: str, session: int, run: int) -> pd.DataFrame:
    """The trials of one run: trial-table columns plus the named behaviour features.

    Returns a DataFrame indexed by the subject's trial row, with columns session, run, trial,
    slot, nsd_id, image, split, then the 35 behaviour columns named as in the manifest.
    """
    info = load_prepared(root)
    if subject not in info.subjects:
        raise KeyError(f"{subject} not in {list(info.subjects)}")
    t = info.subjects[subject].trials
    rows = np.flatnonzero((t["session"] == session) & (t["run"] == run))
    if rows.size == 0:
        raise ValueError(f"{subject} has no trials in session {session}, run {run}")
    frame = pd.DataFrame({k: np.asarray(t[k])[rows] for k in t}, index=rows)
    behaviour = np.load(Path(root) / subject / "behaviour.npy", mmap_mode="r")[rows]
    columns = info.manifest["behaviour"]["columns"]
    return pd.concat([frame, pd.DataFrame(np.asarray(behaviour), index=rows, columns=columns)], axis=1)


def run_memory_index(root: str | Path, subject: str, session: int, run: int) -> np.ndarray:
    """Memory index rows of one run: int32 [n_trials_in_run, 33] (column k = k slots back)."""
    table = run_table(root, subject, session, run)
    return np.asarray(np.load(Path(root) / subject / "memory_index.npy", mmap_mode="r")[table.index.to_numpy()])


def combined_rois(root: str | Path, subject: str, atlases=("prf-visualrois", "floc-faces", "floc-bodies",
                                                            "floc-places", "floc-words")) -> tuple[np.ndarray, list[str]]:
    """Merge several ROI atlases of a subject into one label array.

    Returns ``labels`` int16 [V] (0 = none; where atlases overlap the later one wins) and
    ``names`` with ``names[code]`` for every code (``names[0] == 'Unknown'``).
    """
    names = ["Unknown"]
    with np.load(Path(root) / subject / "rois.npz", allow_pickle=False) as rois:
        missing = [a for a in atlases if a not in rois.files]
        if missing:
            raise KeyError(f"atlases {missing} not in {subject}/rois.npz (have {sorted(rois.files)})")
        labels = np.zeros(rois[atlases[0]].shape, dtype=np.int16)
        for atlas in atlases:
            codes, atlas_names = rois[atlas], rois[f"{atlas}__names"]
            for code in np.unique(codes[codes > 0]):
                names.append(str(atlas_names[code]))
                labels[codes == code] = len(names) - 1
    return labels, names
