"""NSD-like experimental design and simulated behaviour for nsd-mini.

The design mirrors NSD: a per-subject image list (``subjectim``; the first ``n_shared``
columns are the shared images), one ``masterordering`` for all subjects in which every list
entry is planned three times, with repeat gaps spread log-uniformly from a few trials to the
whole experiment, and ``stimpattern`` sessions of 12 runs x 75 slots holding 63 (odd runs) or
62 (even runs) stimulus trials, the first three slots blank.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import REPEATS, RUNS_PER_SESSION, SLOTS_PER_RUN, TRIALS_PER_SESSION, MiniNSDConfig

RESPONSE_COLUMNS = (
    "SUBJECT", "SESSION", "RUN", "TRIAL", "73KID", "10KID", "TIME", "ISOLD", "ISCORRECT", "RT",
    "CHANGEMIND", "MEMORYRECENT", "MEMORYFIRST", "ISOLDCURRENT", "ISCORRECTCURRENT", "TOTAL1",
    "TOTAL2", "BUTTON", "MISSINGDATA",
)
#: Columns set to NaN in a MISSINGDATA run (the button log was lost).
ANSWER_COLUMNS = ("ISCORRECT", "RT", "CHANGEMIND", "ISCORRECTCURRENT", "TOTAL1", "TOTAL2", "BUTTON")


@dataclass(frozen=True)
class Design:
    """The experiment shared by all subjects, NSD conventions (1-based where NSD is).

    Attributes:
        masterordering: int64 (n_trials,), 1-based index into a subject's image list.
        subjectim: int64 (n_subjects, n_images_per_subject), 1-based pool ids.
        sharedix: int64 (n_shared,), 1-based pool ids of the shared images (ascending).
        stimpattern: uint8 (max_sessions, 12, 75), 1 = stimulus slot.
        basiccnt: int64 (3, max_sessions): per session, trials showing an image for the first
            time, repeats of an image first shown in an earlier session, repeats within session.
    """

    masterordering: np.ndarray
    subjectim: np.ndarray
    sharedix: np.ndarray
    stimpattern: np.ndarray
    basiccnt: np.ndarray

    def slots(self, subject: int, n_sessions: int) -> np.ndarray:
        """Slot sequence of one subject (0-based subject index).

        Returns:
            int64 array (n_sessions, 12, 75): 0-based pool id shown in each slot, -1 for blank.
        """
        ids = self.subjectim[subject, self.masterordering[: n_sessions * TRIALS_PER_SESSION] - 1] - 1
        out = np.full((n_sessions, RUNS_PER_SESSION, SLOTS_PER_RUN), -1, dtype=np.int64)
        pattern = self.stimpattern[:n_sessions].astype(bool)
        out[pattern] = ids  # C order: session, run, slot -> time order
        return out


def make_design(cfg: MiniNSDConfig, rng: np.random.Generator) -> Design:
    """Draw the design (image lists, trial order, slot pattern) for ``cfg``."""
    n_img, n_sh, n_subj = cfg.n_images_per_subject, cfg.n_shared_images, cfg.n_subjects
    n_trials = cfg.n_trials

    # pool ids: shared, then each subject's own, the rest unused (gaps in the id space)
    perm = rng.permutation(cfg.n_pool_images)
    shared = np.sort(perm[:n_sh])
    subjectim = np.empty((n_subj, n_img), dtype=np.int64)
    start = n_sh
    for s in range(n_subj):
        own = np.sort(perm[start : start + n_img - n_sh])
        start += n_img - n_sh
        subjectim[s] = np.concatenate([shared, own]) + 1

    # masterordering: three showings per list entry at log-uniformly spread gaps, ranked in time
    first = n_trials * rng.uniform(0.0, 1.0, size=n_img) ** 2  # new images introduced mostly early, as in NSD
    gaps = np.exp(rng.uniform(np.log(3.0), np.log(n_trials), size=(n_img, REPEATS - 1)))
    times = np.concatenate([first[:, None], first[:, None] + np.cumsum(gaps, axis=1)], axis=1)
    order = np.argsort(times.ravel(), kind="stable")
    masterordering = (order // REPEATS + 1).astype(np.int64)

    # stimpattern: 63 (odd runs) / 62 (even runs) stimulus slots, slots 0-2 blank
    stim = np.zeros((cfg.max_sessions, RUNS_PER_SESSION, SLOTS_PER_RUN), dtype=np.uint8)
    for se in range(cfg.max_sessions):
        for r in range(RUNS_PER_SESSION):
            n_stim = 63 if r % 2 == 0 else 62
            pos = np.sort(rng.choice(np.arange(3, SLOTS_PER_RUN), size=n_stim, replace=False))
            stim[se, r, pos] = 1

    basic = np.zeros((3, cfg.max_sessions), dtype=np.int64)
    seen_session = {}
    for t, k in enumerate(masterordering):
        se = t // TRIALS_PER_SESSION
        if k not in seen_session:
            basic[0, se] += 1
        elif seen_session[k] < se:
            basic[1, se] += 1
        else:
            basic[2, se] += 1
        seen_session[k] = se
    return Design(masterordering, subjectim, shared + 1, stim, basic)


def trial_table(design: Design, subject: int, n_sessions: int) -> pd.DataFrame:
    """Design columns of one subject's stimulus trials, time order.

    Returns a DataFrame with columns SESSION, RUN, TRIAL (1-based), SLOT (0-based slot in run),
    73KID, 10KID (1-based), ISOLD, ISOLDCURRENT, MEMORYRECENT, MEMORYFIRST (NaN where undefined).
    """
    n = n_sessions * TRIALS_PER_SESSION
    k10 = design.masterordering[:n]
    sess, run, slot = np.nonzero(design.stimpattern[:n_sessions])
    run_id = sess * RUNS_PER_SESSION + run
    change = np.r_[True, run_id[1:] != run_id[:-1]]
    starts = np.flatnonzero(change)
    trial = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n])) + 1
    isold = np.zeros(n, dtype=np.int64)
    isoldcur = np.zeros(n, dtype=np.int64)
    recent = np.full(n, np.nan)
    firstm = np.full(n, np.nan)
    shows: dict[int, list[int]] = {}
    for t in range(n):
        prev = shows.setdefault(int(k10[t]), [])
        if prev:
            isold[t] = 1
            isoldcur[t] = int(sess[prev[-1]] == sess[t])
            recent[t] = t - prev[-1]
            if len(prev) >= 2:
                firstm[t] = t - prev[0]
        prev.append(t)
    return pd.DataFrame({
        "SESSION": sess + 1, "RUN": run + 1, "TRIAL": trial, "SLOT": slot,
        "73KID": design.subjectim[subject, k10 - 1], "10KID": k10,
        "ISOLD": isold, "ISOLDCURRENT": isoldcur, "MEMORYRECENT": recent, "MEMORYFIRST": firstm,
    })


def simulate_behaviour(
    table: pd.DataFrame, subject: int, rng: np.random.Generator, missing_run: tuple[int, int] | None
) -> pd.DataFrame:
    """Simulate answers of one subject and return the full responses.tsv table.

    Recognition: P(answer 'old') for old images falls with the log of the trials since the
    last showing (forgetting) and rises a little with the number of earlier showings; new
    images get false alarms at ~12%. 3% of trials have no press (NaN), 4% a change of mind
    (both buttons). RT (ms) is log-normal, faster for confident correct answers.

    Args:
        table: output of :func:`trial_table`.
        subject: 1-based subject number.
        rng: random generator.
        missing_run: (session, run), 1-based, whose answers are marked MISSINGDATA, or None.

    Returns:
        DataFrame with the 19 columns of :data:`RESPONSE_COLUMNS`, in that order; integer
        columns with missing values use pandas' nullable Int64.
    """
    n = len(table)
    isold = table["ISOLD"].to_numpy()
    recent = table["MEMORYRECENT"].to_numpy()
    n_prev = isold + np.isfinite(table["MEMORYFIRST"].to_numpy())
    skill = rng.uniform(-0.05, 0.05)
    lag = np.where(isold == 1, np.nan_to_num(recent, nan=1.0), 1.0)
    p_hit = np.clip(0.97 - 0.07 * np.log(lag) + 0.06 * (n_prev - 1) + skill, 0.25, 0.97)
    p_old = np.where(isold == 1, p_hit, 0.12 - skill)
    says_old = rng.random(n) < p_old
    button = np.where(says_old, 2.0, 1.0)
    pressed = rng.random(n) >= 0.03
    change = pressed & (rng.random(n) < 0.04)
    confidence = np.abs(p_old - 0.5) * 2
    correct_now = (button == 2) == (isold == 1)
    rt = np.exp(rng.normal(np.log(650 + 350 * (1 - confidence) + 150 * ~correct_now), 0.22, size=n))
    rt = np.clip(rt + 350 * change, 200.0, 3950.0).round(1)

    extra = (rng.random(n) < 0.03).astype(np.int64)  # occasional double press
    scored = np.where(pressed, 1 + extra, 0)
    other = np.where(change, 1, 0)
    total1 = np.where(button == 1, scored, other)
    total2 = np.where(button == 2, scored, other)

    def nanify(x, dtype=float):
        return np.where(pressed, x, np.nan).astype(dtype)

    iscorrect = ((isold == 0) & (button == 1)) | ((isold == 1) & (button == 2))
    iscorrectcur = ((table["ISOLDCURRENT"].to_numpy() == 0) & (button == 1)) | (
        (table["ISOLDCURRENT"].to_numpy() == 1) & (button == 2)
    )
    df = pd.DataFrame({
        "SUBJECT": np.full(n, subject, dtype=np.int64),
        "SESSION": table["SESSION"].to_numpy(), "RUN": table["RUN"].to_numpy(),
        "TRIAL": table["TRIAL"].to_numpy(), "73KID": table["73KID"].to_numpy(),
        "10KID": table["10KID"].to_numpy(),
        "TIME": _trial_times(table, rng),
        "ISOLD": isold,
        "ISCORRECT": nanify(iscorrect), "RT": nanify(rt), "CHANGEMIND": nanify(change),
        "MEMORYRECENT": table["MEMORYRECENT"].to_numpy(), "MEMORYFIRST": table["MEMORYFIRST"].to_numpy(),
        "ISOLDCURRENT": table["ISOLDCURRENT"].to_numpy(),
        "ISCORRECTCURRENT": nanify(iscorrectcur),
        "TOTAL1": total1.astype(float), "TOTAL2": total2.astype(float), "BUTTON": nanify(button),
        "MISSINGDATA": np.zeros(n, dtype=np.int64),
    })
    if missing_run is not None:
        sel = (df["SESSION"] == missing_run[0]) & (df["RUN"] == missing_run[1])
        df.loc[sel, "MISSINGDATA"] = 1
        df.loc[sel, list(ANSWER_COLUMNS)] = np.nan
    int_columns = ("ISCORRECT", "CHANGEMIND", "MEMORYRECENT", "MEMORYFIRST", "ISCORRECTCURRENT", "TOTAL1", "TOTAL2",
                   "BUTTON")
    for col in int_columns:
        df[col] = df[col].astype(float).astype("Int64")
    return df[list(RESPONSE_COLUMNS)]


def _trial_times(table: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """TIME column: days since midnight of the first session's day; one session every 1-7 days,
    starting between 8:00 and 18:00; runs of 75 x 4 s with 1-3 min breaks."""
    sess = table["SESSION"].to_numpy() - 1
    run = table["RUN"].to_numpy() - 1
    slot = table["SLOT"].to_numpy()
    n_sess = int(sess.max()) + 1
    day = np.concatenate([[0], np.cumsum(rng.integers(1, 8, size=n_sess - 1))])
    start = rng.uniform(8 / 24, 18 / 24, size=n_sess)
    breaks = rng.uniform(60, 180, size=(n_sess, RUNS_PER_SESSION))
    run_start = np.concatenate([np.zeros((n_sess, 1)), np.cumsum(SLOTS_PER_RUN * 4.0 + breaks[:, :-1], axis=1)], axis=1)
    seconds = run_start[sess, run] + 4.0 * slot
    return day[sess] + start[sess] + seconds / 86400.0


def stim_info_table(cfg: MiniNSDConfig, design, rng: np.random.Generator) -> pd.DataFrame:
    """The nsd_stim_info_merged.csv table, one row per pool image (index = 0-based id).

    Columns: cocoId, cocoSplit, cropBox, loss, nsdId (0-based), flagged, BOLD5000, shared1000,
    subject1..N (0/1: in that subject's list), subjectK_rep0..2 (1-based trial number of each
    showing within the subject's trials, 0 if never shown).
    """
    P = cfg.n_pool_images
    shared = np.zeros(P, dtype=bool)
    shared[design.sharedix - 1] = True
    coco = rng.choice(np.arange(1, 600000), size=P, replace=False)
    crop = rng.uniform(0, 0.2, size=P).round(6)
    df = pd.DataFrame({
        "cocoId": coco,
        "cocoSplit": np.where(rng.random(P) < 0.9, "train2017", "val2017"),
        "cropBox": [f"({c}, {c}, 0, 0)" if k % 2 else f"(0, 0, {c}, {c})" for k, c in enumerate(crop)],
        "loss": rng.uniform(0, 0.1, size=P).round(6),
        "nsdId": np.arange(P),
        "flagged": rng.random(P) < 0.01,
        "BOLD5000": rng.random(P) < 0.02,
        "shared1000": shared,
    })
    for s, _n_sess in enumerate(cfg.sessions_per_subject):
        df[f"subject{s + 1}"] = np.isin(np.arange(P) + 1, design.subjectim[s]).astype(np.int64)
    for s, n_sess in enumerate(cfg.sessions_per_subject):
        n = n_sess * TRIALS_PER_SESSION
        ids = design.subjectim[s, design.masterordering[:n] - 1] - 1
        reps = np.zeros((P, 3), dtype=np.int64)
        count = np.zeros(P, dtype=np.int64)
        for t, i in enumerate(ids):
            reps[i, count[i]] = t + 1
            count[i] += 1
        for r in range(3):
            df[f"subject{s + 1}_rep{r}"] = reps[:, r]
    return df
