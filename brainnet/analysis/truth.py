"""Planted truth of nsd-mini, looked up for the vertices of a prepared dataset.

``ground_truth.npz`` (its keys and kinds defined in :mod:`brainnet.data.mini.truth`) holds
per-hemisphere arrays over the full mesh; a prepared subject keeps a subset of vertices
(:attr:`~brainnet.data.prepared.PreparedSubject.vertices`: ``hemi``, ``index``).
:func:`vertex_truth` maps the planted values onto that subset; the other functions compare
model outputs with them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from brainnet.data.layout import HEMI_VOLUME
from brainnet.data.mini.truth import (  # noqa: F401  (KIND_* re-exported for analyses and notebooks)
    KIND_ANSWER,
    KIND_MEMORY,
    KIND_NAMES,
    KIND_NONE,
    KIND_VISUAL,
    MESH_KEYS,
    SUBJECT_KEYS,
    read_truth,
)
from brainnet.data.prepared import PreparedDataset
from brainnet.data.surface import HEMIS

__all__ = ["KIND_ANSWER", "KIND_MEMORY", "KIND_NAMES", "KIND_NONE", "KIND_VISUAL", "early_visual_mask", "kind_mask",
           "kind_summary", "position_recovery", "vertex_truth"]


def vertex_truth(truth: str | Path | dict, prepared: str | Path | PreparedDataset, subject) -> pd.DataFrame:
    """Planted values of a prepared subject's vertices.

    Parameters
    ----------
    truth : ground_truth.npz path (or folder) or the dict from
        :func:`brainnet.data.mini.truth.read_truth`
    prepared : prepared dataset (or its directory) made from that nsd-mini tree
    subject : "subj01" or 1

    Returns
    -------
    DataFrame with one row per selected vertex (row order of the prepared dataset): hemi, index,
    the per-vertex planted arrays (voxel units, hemi 2: kind, rf, sigma and ncsnr from the subject's
    ``{subj}_vol_*`` arrays, other columns 0) (:data:`~brainnet.data.mini.truth.MESH_KEYS`: mask, challenge,
    rf_x, rf_y, rf_size, hierarchy, kind (0 none, 1 visual, 2 memory, 3 answer), category_mix),
    kind_name, and the subject's (:data:`~brainnet.data.mini.truth.SUBJECT_KEYS`) ncsnr_planted,
    ncsnr_written, sigma_image, sigma_memory, sigma_answer.
    """
    gt = read_truth(truth) if not isinstance(truth, dict) else truth
    dataset = PreparedDataset.open(prepared)
    subj = dataset.subject(subject)
    hemi, index = subj.vertices["hemi"].astype(np.int64), subj.vertices["index"].astype(np.int64)
    name = subj.name
    cols: dict[str, np.ndarray] = {"hemi": hemi, "index": index}
    for key in MESH_KEYS + SUBJECT_KEYS:
        out = None
        for h, hname in enumerate(HEMIS):
            full_key = f"{hname}_{key}" if key in MESH_KEYS else f"{name}_{hname}_{key}"
            if full_key not in gt:
                out = None
                break
            arr = gt[full_key]
            if out is None:
                out = np.zeros(hemi.size, dtype=arr.dtype)
            sel = hemi == h
            if sel.any() and index[sel].max() >= arr.shape[0]:
                raise ValueError(f"{full_key} has {arr.shape[0]} vertices but the prepared dataset uses "
                                 f"index {index[sel].max()}: truth and dataset come from different meshes")
            out[sel] = arr[index[sel]]
        if out is not None:
            cols[key] = out
    if "kind" not in cols:
        raise ValueError("ground truth lacks the {hemi}_kind arrays")
    voxel = hemi == HEMI_VOLUME
    for key in ("kind", "rf_x", "rf_y", "rf_size", "sigma_image", "sigma_memory", "ncsnr_planted", "ncsnr_written"):
        if voxel.any() and key in cols and f"{name}_vol_{key}" in gt:  # voxels: the subject's volume truth
            cols[key][voxel] = gt[f"{name}_vol_{key}"].reshape(-1)[index[voxel]]
    df = pd.DataFrame(cols)
    df["kind_name"] = df["kind"].map(KIND_NAMES)
    return df


def kind_mask(df: pd.DataFrame, kind: int | str) -> np.ndarray:
    """Bool (V,) of vertices of a planted kind (number or name: visual / memory / answer / none)."""
    if isinstance(kind, str):
        names = {v: k for k, v in KIND_NAMES.items()}
        if kind not in names:
            raise ValueError(f"unknown kind {kind!r}; choose from {sorted(names)}")
        kind = names[kind]
    return df["kind"].to_numpy() == kind


def early_visual_mask(df: pd.DataFrame, max_hierarchy: float = 0.35) -> np.ndarray:
    """Bool (V,): visual vertices low in the planted hierarchy (energy-driven, small RFs)."""
    return kind_mask(df, KIND_VISUAL) & (df["hierarchy"].to_numpy() <= max_hierarchy)


def position_recovery(positions: np.ndarray, df: pd.DataFrame, mask: np.ndarray | None = None) -> dict[str, float]:
    """Pearson r between learned (x, y) retina positions (V, 2) and the planted RF centres.

    ``mask`` selects vertices (default :func:`early_visual_mask`). Returns {"r_x", "r_y", "n"}.
    """
    pos = np.asarray(positions, np.float64)
    if pos.shape != (len(df), 2):
        raise ValueError(f"positions must be (V={len(df)}, 2), got {pos.shape}")
    m = early_visual_mask(df) if mask is None else np.asarray(mask, bool)
    if m.sum() < 3:
        raise ValueError(f"need at least 3 selected vertices, got {int(m.sum())}")
    rx = float(np.corrcoef(pos[m, 0], df["rf_x"].to_numpy()[m])[0, 1])
    ry = float(np.corrcoef(pos[m, 1], df["rf_y"].to_numpy()[m])[0, 1])
    return {"r_x": rx, "r_y": ry, "n": int(m.sum())}


def kind_summary(values: np.ndarray, df: pd.DataFrame) -> dict[str, float]:
    """Mean of a per-vertex value (V,) over each planted kind present, and over all vertices."""
    v = np.asarray(values, np.float64)
    out = {"all": float(v.mean())}
    for code, name in KIND_NAMES.items():
        m = df["kind"].to_numpy() == code
        if m.any():
            out[name] = float(v[m].mean())
    return out
