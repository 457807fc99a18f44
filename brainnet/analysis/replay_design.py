"""Memory-replay design: which image predicts each trial at lag k, and which trials fit or score.

For each lag k (0 = the current image, k = the image shown k run slots earlier, blank slots
counted) a model predicts the *current* trial's response from the lag-k image alone; the
control is the same model with the lag-k images shuffled among the trials.

Which trials fit, which score (image-disjoint)
----------------------------------------------
*Fit images* are the images of the subject's ``fit_splits`` trials (default: train). For lag k:

* fit trials: split in ``fit_splits`` and lag-k image a fit image;
* scored trials: split in ``score_splits`` (default val, test, predict) and lag-k image **not**
  a fit image — no image a model was fitted on is ever scored, at any lag.

Trials whose lag-k slot is blank (or before the run start) take no part. The control shuffles
the lag-k images within (role, session) groups (role = fit / scored / neither), so it keeps the
image-disjointness and each session's image set; only the trial-image link is broken.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brainnet.data.layout import split_codes

__all__ = ["lag_design", "lag_trials"]


def lag_design(
    memory_index: np.ndarray,
    lag: int,
    shuffle: bool = False,
    rng: np.random.Generator | int | None = None,
    within: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each trial's lag-``lag`` predictor image, and which trials take part.

    Parameters
    ----------
    memory_index : int array of shape (n_trials, n_slots) — column k is the image row shown k
        run slots before the trial (k = 0: the current image), -1 for a blank slot or a slot
        before the run start (prepared-dataset contract, ``memory_index.npy``).
    lag : k, 0 <= k < n_slots.
    shuffle : build the control. What is shuffled: the *assignment* of the lag-k images to the
        included trials — a random permutation of ``image_rows[trial_mask]`` among those trials
        (within each group of ``within`` when given). The trial set, the responses and the
        multiset of predictor images (each image used as often as in the real design) are
        unchanged; only the link between a response and the image k slots before it is broken.
    rng : Generator or seed; required when ``shuffle``.
    within : optional array of shape (n_trials,) of group labels (e.g. the split) — permute only
        within each group, so a train trial keeps a train-time image set.

    Returns
    -------
    image_rows : int64 array of shape (n_trials,) — predictor image row per trial, -1 where
        excluded.
    trial_mask : bool array of shape (n_trials,) — True where the lag-k slot holds an image
        (blank slots and slots before the run start are excluded).
    """
    memory_index = np.asarray(memory_index)
    if memory_index.ndim != 2 or not np.issubdtype(memory_index.dtype, np.integer):
        raise ValueError(
            f"memory_index must be an integer array of shape (n_trials, n_slots), got "
            f"{memory_index.dtype} {memory_index.shape}"
        )
    if not 0 <= int(lag) < memory_index.shape[1]:
        raise ValueError(f"lag must be in [0, {memory_index.shape[1]}), got {lag}")
    image_rows = memory_index[:, int(lag)].astype(np.int64)
    trial_mask = image_rows >= 0
    image_rows[~trial_mask] = -1
    if not shuffle:
        return image_rows, trial_mask
    if rng is None:
        raise ValueError("shuffle=True needs rng (a numpy Generator or an int seed)")
    rng = np.random.default_rng(rng)
    if within is None:
        group_of = np.zeros(len(image_rows), dtype=np.int64)
    else:
        within = np.asarray(within)
        if within.shape != image_rows.shape:
            raise ValueError(f"within must have shape {image_rows.shape}, got {within.shape}")
        group_of = np.unique(within, return_inverse=True)[1]
    shuffled = image_rows.copy()
    for g in np.unique(group_of[trial_mask]):
        idx = np.flatnonzero(trial_mask & (group_of == g))
        shuffled[idx] = image_rows[idx[rng.permutation(len(idx))]]
    return shuffled, trial_mask


def lag_trials(
    memory_index: np.ndarray,
    split: np.ndarray,
    session: np.ndarray,
    image: np.ndarray,
    lag: int,
    control: bool = False,
    seed: int | None = None,
    fit_splits: Sequence[str] = ("train",),
    score_splits: Sequence[str] = ("val", "test", "predict"),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictor image and role of every trial for one lag (see the module docstring).

    Parameters
    ----------
    memory_index : int array (n_trials, n_slots); split, session, image : arrays (n_trials,) —
        a :class:`~brainnet.data.PreparedSubject`'s ``memory_index`` and ``trials`` columns
        (split as int codes, :data:`brainnet.data.layout.SPLIT_CODES`).
    control : shuffle the lag-k images within (role, session) groups; needs ``seed``.

    Returns
    -------
    rows : int64 (n_trials,), predictor image row, -1 where the trial takes no part.
    fit : bool (n_trials,), fit trials.
    score : bool (n_trials,), scored trials; ``fit & score`` is empty and no image of
        ``rows[score]`` is in ``rows[fit]`` or among the fit splits' images.
    """
    split = np.asarray(split)
    n = len(split)
    for name, arr in (("session", session), ("image", image)):
        if np.shape(arr) != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {np.shape(arr)}")
    if np.shape(memory_index)[0] != n:
        raise ValueError(f"memory_index has {np.shape(memory_index)[0]} rows for {n} trials")
    rows, valid = lag_design(memory_index, lag)
    in_fit = np.isin(split, split_codes(list(fit_splits)))
    in_score = np.isin(split, split_codes(list(score_splits)))
    known = np.isin(rows, np.unique(np.asarray(image)[in_fit]))
    fit = valid & in_fit & known
    score = valid & in_score & ~known
    if control:
        if seed is None:
            raise ValueError("control=True needs a seed")
        role = np.where(fit, 0, np.where(score, 1, 2))
        within = role * (int(np.max(session)) + 1) + np.asarray(session, dtype=np.int64)
        rows, _ = lag_design(memory_index, lag, shuffle=True, rng=seed, within=within)
    rows = np.where(fit | score, rows, -1)
    return rows, fit, score
