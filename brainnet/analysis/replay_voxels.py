"""Memory replay beyond cortex: the func1mm voxel groups of a dataset with voxels, and peak recovery.

A dataset prepared in ``fship`` or ``hip_func1mm`` space (:mod:`brainnet.data.prep.spaces`) holds
subject-space voxels of NSD's thalamus and MTL ROI volumes after (or instead of) the surface
vertices. The lag models of :mod:`brainnet.training.replay_grid` score them like vertices; this
module names their groups and checks a recovered peak against a planted one:

* :func:`voxel_groups` — unit indices of the hippocampal / thalamic groups
  (:data:`VOXEL_REPLAY_GROUPS`: H, HHHB, PrC, pulvinar, LGN);
* :func:`recover_peak` — the peak of one group's lag profile with its bootstrap CI over test
  images (:func:`brainnet.analysis.replay_peak.estimate_peak`), whether the planted peak lies in
  it, and the shuffled-image control's image-clustered chance test
  (:func:`brainnet.analysis.memory_replay.control_at_chance`) on the same group;
* :func:`recovery_table` — those results as one table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from brainnet.analysis.replay_results import SubjectReplay
    from brainnet.data import PreparedDataset

__all__ = ["VOLUME_ATLASES", "VOXEL_REPLAY_GROUPS", "PeakRecovery", "recover_peak", "recovery_table", "voxel_groups"]

#: Voxel groups notebook 03 shows beside cortex: the hippocampus (H = HHHB + HT; HHHB = Sub, CA1,
#: CA2, CA3, DG), perirhinal cortex (PrC), the pulvinar and the LGN.
VOXEL_REPLAY_GROUPS: tuple[str, ...] = ("H", "HHHB", "PrC", "pulvinar", "LGN")
#: The ROI volumes whose label names :func:`voxel_groups` also accepts (e.g. ``"LGN"``, ``"CA1"``).
VOLUME_ATLASES: tuple[str, ...] = ("thalamus", "MTL")


def voxel_groups(dataset: PreparedDataset, subject: str | int,
                 names: Sequence[str] = VOXEL_REPLAY_GROUPS) -> dict[str, np.ndarray]:
    """Unit indices of voxel groups of a subject.

    Parameters
    ----------
    dataset : a prepared dataset; subject : ``"subj01"`` or 1.
    names : group names: a derived-group atlas of ``rois.npz`` (``H``, ``HHHB``, ``PrC``,
        ``pulvinar``: its code 1) or a label name of the ``thalamus`` / ``MTL`` atlases (``LGN``,
        ``CA1``, ...).

    Returns
    -------
    name -> int64 array of unit indices (columns of ``fmri.npy``), in ``names`` order; groups
    without a voxel are left out, and a subject without voxels gives ``{}``.
    KeyError for a name that is neither (listing what the dataset has).
    """
    subj = dataset.subject(subject)
    if not subj.is_voxel.any():
        return {}
    rois = subj.rois
    out = {}
    for name in names:
        if name in rois and name not in VOLUME_ATLASES:
            codes, _ = rois[name]
            idx = np.flatnonzero(codes == 1)
        else:
            found = [(a, rois[a][1].index(name)) for a in VOLUME_ATLASES if a in rois and name in rois[a][1]]
            if not found:
                labels = sorted({n for a in VOLUME_ATLASES if a in rois for n in rois[a][1][1:]})
                raise KeyError(f"{name!r} is neither a voxel group atlas nor a label of {VOLUME_ATLASES} "
                               f"in {subj.name}'s ROIs (labels: {labels})")
            atlas, code = found[0]
            idx = np.flatnonzero(rois[atlas][0] == code)
        idx = idx[subj.is_voxel[idx]]
        if len(idx):
            out[name] = idx.astype(np.int64)
    return out


@dataclass(frozen=True)
class PeakRecovery:
    """A group's recovered lag peak against a planted one, and its shuffled control.

    Attributes
    ----------
    subject, group : whose profile; n_units : units in the group.
    planted_peak : the planted peak lag.
    peak, peak_ci : the recovered peak (refined argmax over the window) and its percentile
        bootstrap interval over test images.
    planted_in_ci : ``peak_ci[0] <= planted_peak <= peak_ci[1]``.
    found : :attr:`~brainnet.analysis.replay_peak.PeakEstimate.found` (inside the window, narrow
        CI, bootstrap support).
    control_mean_r, control_ci, control_p, control_at_chance : the shuffled-image control's mean
        r over all lags of the grid, its CI, p-value of mean r = 0 and ``p >= alpha``
        (image-clustered test).
    """

    subject: str
    group: str
    n_units: int
    planted_peak: float
    peak: float
    peak_ci: tuple[float, float]
    planted_in_ci: bool
    found: bool
    control_mean_r: float
    control_ci: tuple[float, float]
    control_p: float
    control_at_chance: bool

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def recover_peak(sr: SubjectReplay, group: str, planted_peak: float, window: tuple[float, float] = (1, np.inf),
                 n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, n_units: int | None = None) -> PeakRecovery:
    """Recover ``group``'s lag peak with a bootstrap CI and test its shuffled control.

    Parameters
    ----------
    sr : one subject's grid (:class:`~brainnet.analysis.replay_results.SubjectReplay`), run with
        ``group`` among its vertex groups.
    planted_peak : the lag the profile should peak at (e.g. nsd-mini's ``hippocampus_lag_profile``
        peak, :func:`brainnet.analysis.planted.planted_peak_lag`).
    window : lags searched (default: all but lag 0, the image on screen).
    n_boot, seed : bootstrap resamples over test images and their seed.
    alpha : level of the chance test (the peak CI is always 95%).
    n_units : the group's size, recorded as is (None: -1).
    """
    est = sr.peak(group, window=window, n_boot=n_boot, seed=seed)
    test = sr.chance(group, alpha=alpha)
    lo, hi = (float(v) for v in est.peak_ci)
    return PeakRecovery(subject=sr.subject, group=group, n_units=-1 if n_units is None else int(n_units),
                        planted_peak=float(planted_peak), peak=float(est.peak), peak_ci=(lo, hi),
                        planted_in_ci=bool(lo <= planted_peak <= hi), found=bool(est.found),
                        control_mean_r=float(test.mean_r), control_ci=(float(test.ci[0]), float(test.ci[1])),
                        control_p=float(test.p_value), control_at_chance=bool(test.at_chance))


def recovery_table(recoveries: Mapping[str, PeakRecovery] | Sequence[PeakRecovery]) -> pd.DataFrame:
    """One row per :class:`PeakRecovery`: subject, group, n_units, planted, peak, CI low / high,
    planted in CI, found, control mean r, control p, control at chance."""
    items = recoveries.values() if isinstance(recoveries, Mapping) else recoveries
    return pd.DataFrame([{"subject": r.subject, "group": r.group, "n_units": r.n_units, "planted": r.planted_peak,
                          "peak": r.peak, "CI low": r.peak_ci[0], "CI high": r.peak_ci[1],
                          "planted in CI": r.planted_in_ci, "found": r.found, "control mean r": r.control_mean_r,
                          "control p": r.control_p, "control at chance": r.control_at_chance} for r in items])
