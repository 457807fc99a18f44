"""Memory replay, the results: per-subject lag-model scores and the tables built from them.

:class:`SubjectReplay` holds one subject's grid (per-vertex r and per-trial products of every
lag, real and control; :func:`brainnet.training.replay_grid.run_replay` makes it) and answers
the questions of notebook 03 with the maths of :mod:`.memory_replay` and :mod:`.replay_peak`.
The functions below turn a :class:`ReplayResult` into the notebook's tables and key numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from brainnet.analysis.memory_replay import ChanceTest, control_at_chance, lag_profile
from brainnet.analysis.replay_peak import PeakEstimate, estimate_peak

if TYPE_CHECKING:
    from brainnet.data import PreparedDataset
    from brainnet.training.replay_fit import ReplayConfig

__all__ = [
    "ReplayResult",
    "SubjectReplay",
    "chance_table",
    "focus_group",
    "group_profiles",
    "group_sizes",
    "peak_estimates",
    "peak_table",
    "planted_comparison",
    "replay_key_numbers",
    "vertex_groups",
]


@dataclass
class SubjectReplay:
    """All lag models of one subject.

    Attributes
    ----------
    subject : name; lags : int array (n_lags,).
    r : float32 array (2, n_lags, V) — per-vertex r; index 0 real, 1 control.
    products : group name -> float64 array (2, n_lags, n_trials), per-trial products (NaN =
        not scored at that lag).
    image : int64 (n_trials,) current image per trial (the bootstrap's resampling unit).
    n_fit, n_score : int arrays (2, n_lags) of trial counts.
    """

    subject: str
    lags: np.ndarray
    r: np.ndarray
    products: dict[str, np.ndarray]
    image: np.ndarray
    n_fit: np.ndarray
    n_score: np.ndarray

    def profile(self, labels: np.ndarray, names=None, control: bool = False) -> pd.DataFrame:
        """Mean r per ROI against lag (:func:`~brainnet.analysis.memory_replay.lag_profile`)."""
        return lag_profile(self.r[int(control)], labels, names, self.lags)

    def group_profile(self, group: str = "all", control: bool = False) -> np.ndarray:
        """(n_lags,) mean r of a vertex group's scored trials (the mean of its products)."""
        return np.nanmean(self._products(group)[int(control)], axis=1)

    def lag_map(self, lag: int, control: bool = False) -> np.ndarray:
        """(V,) per-vertex r of the lag model at ``lag`` (KeyError if that lag was not run)."""
        lags = [int(k) for k in self.lags]
        if int(lag) not in lags:
            raise KeyError(f"lag {lag} not in the grid's lags {lags}")
        return self.r[int(control), lags.index(int(lag))]

    def _products(self, group: str) -> np.ndarray:
        if group not in self.products:
            raise KeyError(f"no products for vertex group {group!r}; have {sorted(self.products)}")
        return self.products[group]

    def peak(self, group: str = "all", window: tuple[float, float] | None = (1, np.inf), n_boot: int = 1000,
             seed: int = 0, **kwargs) -> PeakEstimate:
        """Peak and period of the real models' profile on a vertex group, bootstrap over images."""
        return estimate_peak(self._products(group)[0], self.lags, groups=self.image, n_boot=n_boot, rng=seed,
                             window=window, **kwargs)

    def chance(self, group: str = "all", alpha: float = 0.05) -> ChanceTest:
        """Image-clustered test that the control's mean r (all lags) on a vertex group is 0."""
        return control_at_chance(products=self._products(group)[1], groups=self.image, alpha=alpha)


@dataclass
class ReplayResult:
    """:func:`~brainnet.training.replay_grid.run_replay` output: per-subject results, the grid's
    table (one row per cell) and the :class:`~brainnet.training.replay_fit.ReplayConfig` used."""

    subjects: dict[str, SubjectReplay]
    table: pd.DataFrame
    config: ReplayConfig | None = None

    def __getitem__(self, subject: str) -> SubjectReplay:
        return self.subjects[subject]


# --------------------------------------------------------------------------- vertex groups


def vertex_groups(dataset: PreparedDataset, subject: str, truth_file=None, atlas: str = "streams",
                  voxels: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Unit groups of a subject: every ROI of ``atlas`` (code > 0), with nsd-mini's ``truth_file``
    every planted kind of the surface vertices (``"planted memory"``, ...) and, when the subject
    has voxels (``fship``), ``"cortex"`` (every surface vertex) and the voxel groups ``voxels``
    (default :data:`~brainnet.analysis.replay_voxels.VOXEL_REPLAY_GROUPS`, see
    :func:`~brainnet.analysis.replay_voxels.voxel_groups`; ``()`` for none).

    Returns name -> int64 unit indices: ``"cortex"`` (with voxels), the ROIs in code order, the
    planted kinds in code order, then the voxel groups.
    """
    from brainnet.analysis.replay_voxels import VOXEL_REPLAY_GROUPS, voxel_groups
    from brainnet.analysis.truth import vertex_truth

    subj = dataset.subject(subject)
    surface = ~subj.is_voxel
    groups = {"cortex": np.flatnonzero(surface)} if subj.is_voxel.any() and surface.any() else {}
    if surface.any():  # a hip_func1mm dataset has no surface atlas
        codes, names = subj.roi_labels(atlas)
        groups.update({str(names[c]): np.flatnonzero(codes == c) for c in np.unique(codes[codes > 0])})
    if truth_file:
        truth = vertex_truth(truth_file, dataset.root, subject)
        kinds = np.where(surface, truth["kind"].to_numpy(), 0)  # voxels: their groups below
        for code in np.unique(kinds[kinds > 0]):
            groups[f"planted {truth['kind_name'].to_numpy()[kinds == code][0]}"] = np.flatnonzero(kinds == code)
    groups.update(voxel_groups(dataset, subject, VOXEL_REPLAY_GROUPS if voxels is None else voxels))
    return groups


# --------------------------------------------------------------------------- tables


def group_sizes(groups: Mapping[str, Mapping[str, np.ndarray]]) -> pd.DataFrame:
    """Vertices per group (rows) and subject (columns)."""
    return pd.DataFrame({s: {g: len(v) for g, v in gr.items()} for s, gr in groups.items()})


def group_profiles(result: ReplayResult, groups: Mapping[str, Mapping[str, np.ndarray]]) -> pd.DataFrame:
    """Mean r against lag of ``all`` and every group, real models: one column ``"<subject> <group>"``
    per (subject, group), indexed by lag."""
    subjects = list(result.subjects)
    return pd.DataFrame({f"{s} {g}": result[s].group_profile(g) for s in subjects for g in ["all", *groups[s]]},
                        index=pd.Index(result[subjects[0]].lags, name="lag"))


def focus_group(sr: SubjectReplay, groups: Sequence[str], focus: str | None = None, min_lag: int = 2) -> str:
    """``focus`` if given, else the group with the largest mean r over lags >= ``min_lag``."""
    if focus:
        return focus
    return max(groups, key=lambda g: np.nanmean(sr.group_profile(g)[sr.lags >= min_lag]))


def peak_estimates(result: ReplayResult, groups: Mapping[str, Sequence[str]], focus: str | None = None,
                   window: tuple[float, float] = (1, np.inf), n_boot: int = 1000,
                   seed: int = 0) -> dict[str, tuple[str, PeakEstimate]]:
    """subject -> (group, :class:`PeakEstimate`) of each subject's focus group (:func:`focus_group`)."""
    out = {}
    for subject, sr in result.subjects.items():
        group = focus_group(sr, list(groups[subject]), focus)
        out[subject] = (group, sr.peak(group, window=window, n_boot=n_boot, seed=seed))
    return out


def peak_table(peaks: Mapping[str, tuple[str, PeakEstimate]]) -> pd.DataFrame:
    """One row per subject: group, peak and its CI, support, found, period, its CI and permutation p."""
    rows = [{"subject": s, "group": g, "peak": e.peak, "peak CI low": e.peak_ci[0], "peak CI high": e.peak_ci[1],
             "support": e.support, "found": e.found, "period": e.period, "period CI low": e.period_ci[0],
             "period CI high": e.period_ci[1], "period p": e.period_p} for s, (g, e) in peaks.items()]
    return pd.DataFrame(rows)


def chance_table(result: ReplayResult, groups: Mapping[str, Sequence[str]], alpha: float = 0.05) -> pd.DataFrame:
    """Image-clustered test of the shuffled control's mean r = 0 (all lags), per subject and group
    (``all`` first): columns subject, group, control mean r, CI low, CI high, p, at chance."""
    rows = []
    for subject, sr in result.subjects.items():
        for g in ["all", *groups[subject]]:
            test = sr.chance(g, alpha)
            rows.append({"subject": subject, "group": g, "control mean r": test.mean_r, "CI low": test.ci[0],
                         "CI high": test.ci[1], "p": test.p_value, "at chance": test.at_chance})
    return pd.DataFrame(rows)


def planted_comparison(sr: SubjectReplay, planted: np.ndarray, window: tuple[float, float],
                       group: str = "planted memory") -> dict[str, Any]:
    """Planted lag profile (33,) against the recovered one on ``group``: the planted peak lag
    (largest |weight| in ``window``) and the Pearson r between |planted weight| and recovered
    mean r over the grid's lags but the first (lag 0, the image on screen)."""
    from brainnet.analysis.planted import planted_peak_lag

    recovered = sr.group_profile(group)
    r = np.corrcoef(np.abs(np.asarray(planted)[np.asarray(sr.lags)][1:]), recovered[1:])[0, 1]
    return {"planted_peak_lag": planted_peak_lag(planted, window=window), "planted_profile_vs_recovered_r": float(r)}


def replay_key_numbers(peaks: Mapping[str, tuple[str, PeakEstimate]], chance: pd.DataFrame) -> dict[str, dict]:
    """Per subject: group, peak, peak_ci, peak_found, period, period_ci, period_p,
    control_at_chance (group -> bool) and control_mean_r_all (the ``key_numbers.json`` entries)."""
    out = {}
    for subject, (group, est) in peaks.items():
        rows = chance[chance["subject"] == subject]
        out[subject] = {
            "group": group, "peak": est.peak, "peak_ci": list(est.peak_ci), "peak_found": est.found,
            "period": est.period, "period_ci": list(est.period_ci), "period_p": est.period_p,
            "control_at_chance": {str(g): bool(a) for g, a in zip(rows["group"], rows["at chance"])},
            "control_mean_r_all": float(rows.loc[rows["group"] == "all", "control mean r"].iloc[0]),
        }
    return out
