"""The 35 behaviour features of the Memory Encoding Model, from a subject's ``responses.tsv``.

21 per-trial features, then 7 of them (:data:`CARRIED`) taken from the previous and from the
next showing of the same image (zeros when there is none). Previous / next showings are found
in the subject's *full* trial history (all sessions, time order), never by row offsets in a
subset, so a split or a session selection cannot shift them.

Feature definitions (z = z-score, ddof 0, over the subject's non-NaN values; "session z" =
within the trial's session):

====  =================================================================
0     RT, z over the subject
1     RT, session z
2     BUTTON (1/2)
3     CHANGEMIND
4     TOTAL1
5     TOTAL2
6     ISCORRECT
7     ISCORRECTCURRENT
8     has MEMORYRECENT (an earlier showing exists)
9     has MEMORYFIRST (two earlier showings exist)
10    ISOLDCURRENT
11    log1p(minutes since the most recent earlier showing), z (unseen: 500 days)
12    the same, session z
13    log1p(minutes since the first earlier showing), z (unseen: 500 days)
14    the same, session z
15    log1p(MEMORYRECENT) (NaN -> 15000 trials), z
16    the same, session z
17    log1p(MEMORYFIRST) (NaN -> 15000 trials), z
18    the same, session z
19    (RUN - 6) / 12
20    (TRIAL - 30) / 60
21-27 columns 0, 1, 2, 11, 12, 15, 16 at the previous showing of the image
28-34 the same at the next showing
====  =================================================================

Minutes come from ``TIME`` (days) x 1440. A trial with no earlier showing gets
:data:`UNSEEN_DAYS` (500 days, far longer than any gap within the experiment, so it sits above every
real gap) before the same conversion, as in the reference. After all features are computed, NaN in a column
is replaced by that column's mean over the subject's trials (0 if the column is all NaN).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainnet.data.layout import CARRIED

#: Minutes per day: ``TIME`` in ``responses.tsv`` is in days.
MINUTES_PER_DAY = 1440.0
#: Time since an earlier showing given to a trial that has none, in days (converted to minutes like
#: every measured gap).
UNSEEN_DAYS = 500.0
UNSEEN_MINUTES = UNSEEN_DAYS * MINUTES_PER_DAY
#: Trials since an earlier showing (MEMORYRECENT / MEMORYFIRST) given when there is none.
UNSEEN_TRIALS = 15000.0


def _zscore(values: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """z-score ignoring NaN (ddof 0), over all values or within each group; std 0 -> 0."""
    out = np.full(values.shape, np.nan)
    keys = [None] if groups is None else np.unique(groups)
    for key in keys:
        sel = np.ones(values.shape, bool) if key is None else groups == key
        part = values[sel]
        ok = ~np.isnan(part)
        if not ok.any():
            continue
        mean = part[ok].mean()
        std = part[ok].std()
        out[sel] = (part - mean) / std if std > 0 else np.where(ok, 0.0, np.nan)
    return out


def showing_links(nsd_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Previous / first / next showing of the same image within one trial history.

    Args:
        nsd_ids: int [n_trials], image id per trial in time order (the subject's full history).

    Returns:
        prev, first, next: int64 [n_trials] row of the previous earlier showing, of the first
        showing (only when this is not it), of the next later showing; -1 when none.
    """
    nsd_ids = np.asarray(nsd_ids)
    n = nsd_ids.size
    order = np.lexsort((np.arange(n), nsd_ids))  # by image, then by time
    sorted_ids = nsd_ids[order]
    same_prev = np.r_[False, sorted_ids[1:] == sorted_ids[:-1]]
    same_next = np.r_[sorted_ids[:-1] == sorted_ids[1:], False]
    prev = np.full(n, -1, np.int64)
    nxt = np.full(n, -1, np.int64)
    prev[order[same_prev]] = order[np.flatnonzero(same_prev) - 1]
    nxt[order[same_next]] = order[np.flatnonzero(same_next) + 1]
    starts = np.flatnonzero(~same_prev)
    group_first = order[starts][np.cumsum(~same_prev) - 1]
    first = np.empty(n, np.int64)
    first[order] = np.where(same_prev, group_first, -1)
    return prev, first, nxt


def behaviour_features(responses: pd.DataFrame) -> np.ndarray:
    """Compute the 35 features for every row of a subject's full response table.

    Args:
        responses: the table of :func:`brainnet.data.formats.nsd.read_responses` (all the subject's
            trials in time order; it must not be a subset, or the showing links are wrong).

    Returns:
        float32 [n_trials, 35], no NaN; columns named by :data:`brainnet.data.layout.BEHAVIOUR_COLUMNS`.
    """
    col = {c: responses[c].to_numpy(dtype=np.float64) for c in responses.columns}
    session = col["SESSION"]
    n = len(responses)
    prev, first, nxt = showing_links(responses["73KID"].to_numpy())
    minutes = col["TIME"] * MINUTES_PER_DAY
    idx = np.arange(n)

    def since(link: np.ndarray) -> np.ndarray:
        has = link >= 0
        out = np.full(n, UNSEEN_MINUTES)
        out[has] = minutes[idx[has]] - minutes[link[has]]
        return np.log1p(np.clip(out, 0.0, None))

    rt = col["RT"]
    log_recent = np.log1p(np.nan_to_num(col["MEMORYRECENT"], nan=UNSEEN_TRIALS))
    log_first = np.log1p(np.nan_to_num(col["MEMORYFIRST"], nan=UNSEEN_TRIALS))
    min_recent, min_first = since(prev), since(first)
    base = np.stack([
        _zscore(rt), _zscore(rt, session),
        col["BUTTON"], col["CHANGEMIND"], col["TOTAL1"], col["TOTAL2"],
        col["ISCORRECT"], col["ISCORRECTCURRENT"],
        (~np.isnan(col["MEMORYRECENT"])).astype(float), (~np.isnan(col["MEMORYFIRST"])).astype(float),
        col["ISOLDCURRENT"],
        _zscore(min_recent), _zscore(min_recent, session),
        _zscore(min_first), _zscore(min_first, session),
        _zscore(log_recent), _zscore(log_recent, session),
        _zscore(log_first), _zscore(log_first, session),
        (col["RUN"] - 6.0) / 12.0, (col["TRIAL"] - 30.0) / 60.0,
    ], axis=1)
    means = np.nanmean(np.where(np.isnan(base).all(0), 0.0, base), axis=0)
    base = np.where(np.isnan(base), means, base)
    carried = base[:, CARRIED]
    prev_part = np.where((prev >= 0)[:, None], carried[np.maximum(prev, 0)], 0.0)
    next_part = np.where((nxt >= 0)[:, None], carried[np.maximum(nxt, 0)], 0.0)
    return np.concatenate([base, prev_part, next_part], axis=1).astype(np.float32)
