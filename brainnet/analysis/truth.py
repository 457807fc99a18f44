"""Planted truth of nsd-mini, looked up for the vertices of a prepared dataset.

``ground_truth.npz`` (written by :func:`brainnet.data.mini.generate.make_mini_nsd`) holds per-hemisphere
arrays over the full mesh; a prepared subject keeps a subset of vertices (``vertices.npz``:
``hemi``, ``index``). :func:`vertex_truth` maps the planted values onto that subset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from brainnet.data.formats.nsd import subject_name

KIND_NONE, KIND_VISUAL, KIND_MEMORY, KIND_ANSWER = 0, 1, 2, 3
KIND_NAMES = {KIND_NONE: "none", KIND_VISUAL: "visual", KIND_MEMORY: "memory", KIND_ANSWER: "answer"}
HEMIS = ("lh", "rh")
#: Per-hemisphere arrays over the mesh: {hemi}_<name>.
MESH_KEYS = ("rf_x", "rf_y", "rf_size", "hierarchy", "kind", "category_mix", "mask", "challenge")
#: Per-subject and hemisphere arrays over the mesh: {subj}_{hemi}_<name>.
SUBJECT_KEYS = ("sigma_image", "sigma_memory", "sigma_answer", "ncsnr_planted", "ncsnr_written")


def load_truth(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of ``ground_truth.npz`` (a folder holding it is accepted too)."""
    path = Path(path)
    if path.is_dir():
        path = path / "ground_truth.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected nsd-mini's ground_truth.npz "
                                "(brainnet.data.mini.ensure_mini(...).ground_truth)")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def vertex_truth(truth: str | Path | dict, prepared: str | Path, subject) -> pd.DataFrame:
    """Planted values of a prepared subject's vertices.

    Parameters
    ----------
    truth : ground_truth.npz path (or folder) or the dict from :func:`load_truth`
    prepared : prepared dataset directory made from that nsd-mini tree
    subject : "subj01" or 1

    Returns
    -------
    DataFrame with one row per selected vertex (row order of the prepared dataset): hemi, index,
    rf_x, rf_y, rf_size, hierarchy, kind (0 none, 1 visual, 2 memory, 3 answer), kind_name,
    category_mix, and the subject's sigma_image, sigma_memory, sigma_answer, ncsnr_planted.
    """
    gt = load_truth(truth) if not isinstance(truth, dict) else truth
    name = subject_name(subject)
    vpath = Path(prepared) / name / "vertices.npz"
    if not vpath.is_file():
        raise FileNotFoundError(f"{vpath} not found: {name} is not in the prepared dataset {prepared}")
    with np.load(vpath) as v:
        hemi, index = v["hemi"].astype(np.int64), v["index"].astype(np.int64)
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
