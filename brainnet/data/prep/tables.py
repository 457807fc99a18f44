"""Pure functions of the preparation: trial table, memory index, splits, noise ceiling, vertices.

No file access here except for naming files in errors; :mod:`brainnet.data.prep.plan`
feeds these with what the readers return.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from brainnet.data.formats.nsd import ExpDesign
from brainnet.data.layout import SPLIT_CODES
from brainnet.errors import DataFormatError

#: Frames of the memory index: the current slot and 32 slots back.
MEMORY_FRAMES = 33



def trial_table(design: ExpDesign, responses: pd.DataFrame, subject: str,
                design_path: Path, responses_path: Path) -> dict[str, np.ndarray]:
    """Cross-check a subject's responses against the design and place each trial in its run.

    Args:
        design: the experimental design.
        responses: the subject's full response table (all sessions, time order).

    Returns:
        dict of int arrays [n_trials]: ``session`` (1-based), ``run`` (1-based), ``trial``
        (1-based within run), ``slot`` (0-based slot within run, blanks count), ``nsd_id``
        (0-based 73k id).
    """
    session = responses["SESSION"].to_numpy()
    run = responses["RUN"].to_numpy()
    trial = responses["TRIAL"].to_numpy()
    n_sessions = int(session.max())
    stim = design.stimpattern
    n_runs = stim.shape[1]
    if not np.array_equal(np.unique(session), np.arange(1, n_sessions + 1)):
        raise DataFormatError(responses_path, f"sessions 1..{n_sessions} without gaps",
                              f"sessions {np.unique(session).tolist()}")
    if n_sessions > stim.shape[0]:
        raise DataFormatError(design_path, f"stimpattern for {n_sessions} sessions ({responses_path.name})",
                              f"{stim.shape[0]} sessions")
    if run.max() > n_runs:
        raise DataFormatError(responses_path, f"runs 1..{n_runs}", f"run {run.max()}")
    slot = np.empty(len(responses), dtype=np.int64)
    key = (session - 1) * n_runs + (run - 1)
    counts = np.bincount(key, minlength=n_sessions * n_runs)
    for s in range(n_sessions):
        for r in range(n_runs):
            positions = np.flatnonzero(stim[s, r])
            n = counts[s * n_runs + r]
            if n != positions.size:
                raise DataFormatError(
                    design_path, f"stimpattern[{s}, {r}] with {n} stimulus slots ({responses_path.name} lists "
                    f"{n} trials in session {s + 1} run {r + 1})", f"{positions.size} stimulus slots")
            rows = np.flatnonzero(key == s * n_runs + r)
            if not np.array_equal(trial[rows], np.arange(1, n + 1)):
                raise DataFormatError(responses_path, f"TRIAL 1..{n} in session {s + 1} run {r + 1}",
                                      f"{trial[rows][:5].tolist()}...")
            slot[rows] = positions
    n_trials = len(responses)
    if n_trials > design.masterordering.size:
        raise DataFormatError(design_path, f"masterordering covering {n_trials} trials",
                              f"{design.masterordering.size} entries")
    row = int(subject[4:]) - 1
    if row >= design.subjectim.shape[0]:
        raise DataFormatError(design_path, f"a subjectim row for {subject}", f"{design.subjectim.shape[0]} rows")
    expected = design.nsd_ids(subject, n_trials)
    found = responses["73KID"].to_numpy() - 1
    if not np.array_equal(expected, found):
        bad = int(np.flatnonzero(expected != found)[0])
        raise DataFormatError(responses_path, f"73KID {expected[bad] + 1} at data row {bad + 1} (from the design)",
                              f"73KID {found[bad] + 1}")
    return {"session": session.astype(np.int64), "run": run.astype(np.int64), "trial": trial.astype(np.int64),
            "slot": slot, "nsd_id": expected.astype(np.int64)}


def memory_index(session: np.ndarray, run: np.ndarray, slot: np.ndarray, image: np.ndarray,
                 n_slots: int, n_frames: int = MEMORY_FRAMES) -> np.ndarray:
    """Images of the ``n_frames`` run slots ending at each trial (never crossing runs).

    Args:
        session, run, slot, image: int [n_trials]; ``image`` is the row into the image store.
        n_slots: slots per run.

    Returns:
        int32 [n_trials, n_frames]: column k = image row shown k slots before the trial
        (k = 0: the trial's own image); -1 for a blank slot or a slot before the run start.
    """
    run_key = (np.asarray(session, np.int64) * 1000 + np.asarray(run, np.int64))
    _, block = np.unique(run_key, return_inverse=True)
    pad = n_frames - 1
    grid = np.full((block.max() + 1, pad + n_slots), -1, dtype=np.int64)
    grid[block, pad + slot] = image
    cols = pad + slot[:, None] - np.arange(n_frames)[None, :]
    return grid[block[:, None], cols].astype(np.int32)


def assign_splits(nsd_ids: list[np.ndarray], heldout: list[np.ndarray], fractions: tuple[float, float, float],
                  seed: int) -> tuple[list[np.ndarray], dict[int, int]]:
    """Image-disjoint train / val / test assignment shared by all subjects, plus ``predict``.

    The unique images of the non-held-out trials of all subjects are sorted, shuffled with
    ``np.random.default_rng(seed)`` and cut by ``fractions`` (rounded counts; test gets the rest).
    An image therefore has the same split for every subject.

    Args:
        nsd_ids: per subject int [n_trials] image ids.
        heldout: per subject bool [n_trials], True for the held-out sessions.

    Returns:
        per subject int8 [n_trials] split codes (:data:`SPLIT_CODES`), and the image -> code map.
    """
    pool = np.unique(np.concatenate([ids[~h] for ids, h in zip(nsd_ids, heldout)] or [np.zeros(0, np.int64)]))
    order = np.random.default_rng(seed).permutation(pool.size)
    n_train = int(round(fractions[0] * pool.size))
    n_val = min(int(round(fractions[1] * pool.size)), pool.size - n_train)
    codes = np.full(pool.size, SPLIT_CODES["test"], dtype=np.int8)
    codes[order[:n_train]] = SPLIT_CODES["train"]
    codes[order[n_train:n_train + n_val]] = SPLIT_CODES["val"]
    image_split = dict(zip(pool.tolist(), codes.tolist()))
    out = []
    for ids, held in zip(nsd_ids, heldout):
        split = np.full(ids.size, SPLIT_CODES["predict"], dtype=np.int8)
        keep = ~held
        split[keep] = codes[np.searchsorted(pool, ids[keep])]
        out.append(split)
    return out, image_split


def select_vertices(mask: np.ndarray, nc: np.ndarray, threshold: float | str | None) -> tuple[np.ndarray, float | None]:
    """The selected vertices: the challenge mask, optionally extended by noise ceiling.

    Args:
        mask: bool [n] (both hemispheres concatenated), the Algonauts all-vertices mask.
        nc: float [n] noise ceiling fraction (0 where unknown).
        threshold: None (mask only), a fraction (add vertices with NC >= it), ``"auto"``
            (add the highest-NC outside vertices, as many as keep their mean NC >= the mean NC
            of the mask vertices) or ``"all"`` (every vertex).

    Returns:
        bool [n] selection, and the NC threshold used (None when the mask alone is used).
    """
    mask = np.asarray(mask, bool)
    nc = np.asarray(nc, np.float64)
    if threshold is None:
        return mask.copy(), None
    if threshold == "all":
        return np.ones_like(mask), None
    outside = np.flatnonzero(~mask)
    if threshold == "auto":
        target = float(nc[mask].mean()) if mask.any() else 0.0
        order = outside[np.argsort(-nc[outside], kind="stable")]
        running = np.cumsum(nc[order]) / np.arange(1, order.size + 1)
        n_add = int(np.sum(running >= target))  # running mean only falls, so this is a prefix
        used = float(nc[order[n_add - 1]]) if n_add else None
        selected = mask.copy()
        selected[order[:n_add]] = True
        return selected, used
    thr = float(threshold)
    return mask | ((nc >= thr) & (nc > 0)), thr


def zscore_session(betas: np.ndarray, copy: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """z-score each vertex over one session's trials (ddof 0, NaN ignored), then NaN -> 0.

    Args:
        betas: float32 [V, T].
        copy: False = work in place on ``betas`` (saves one [V, T] array of memory).

    Returns:
        z: float32 [V, T] (0 for constant or all-NaN vertices); has_nan: bool [V].
    """
    z = np.array(betas, dtype=np.float32, copy=True) if copy else betas
    nan = np.isnan(z)
    has_nan = nan.any(axis=1)
    nan_rows = np.flatnonzero(has_nan)
    nan_in_rows = nan[nan_rows]  # small: only the vertices with NaN
    count = z.shape[1] - nan.sum(axis=1)
    del nan
    np.nan_to_num(z, copy=False, nan=0.0)
    safe = np.maximum(count, 1)
    mean = z.sum(axis=1, dtype=np.float64) / safe
    z -= mean[:, None].astype(np.float32)
    if nan_rows.size:
        z[nan_rows] = np.where(nan_in_rows, np.float32(0), z[nan_rows])
    std = np.sqrt(np.einsum("ij,ij->i", z, z, dtype=np.float64) / safe)
    scale = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 0.0)
    z *= scale[:, None].astype(np.float32)
    return z, has_nan
