"""Peak lag and period of a memory-replay lag profile, with a bootstrap over test images.

* :func:`peak_of` / :func:`period_of` — the refined peak and the period of one profile;
* :func:`estimate_peak` — both with percentile bootstrap intervals: test *images* are resampled
  (all trials of an image together), every lag's mean r is recomputed from the same resample
  (from the per-trial products of :mod:`brainnet.analysis.memory_replay`), and the peak and the
  period of each resampled profile are taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brainnet.analysis.memory_replay import group_sums

__all__ = ["PeakEstimate", "estimate_peak", "peak_of", "period_of"]



def _lag_step(lags: np.ndarray) -> float:
    steps = np.diff(lags)
    if len(lags) < 3 or not np.allclose(steps, steps[0]) or steps[0] <= 0:
        raise ValueError(f"lags must be >= 3 evenly spaced increasing values, got {lags}")
    return float(steps[0])


def _parabolic_offset(left: np.ndarray, mid: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Vertex offset (in steps, within [-0.5, 0.5]) of the parabola through three samples."""
    denom = left - 2 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(denom < 0, 0.5 * (left - right) / denom, 0.0)
    return np.clip(np.nan_to_num(off), -0.5, 0.5)


def _detrend(profiles: np.ndarray, x: np.ndarray, degree: int | None) -> np.ndarray:
    """Remove a least-squares polynomial of ``degree`` in x from each row of (n, n_lags)."""
    if degree is None:
        return profiles
    basis = np.vander((x - x.mean()) / max(np.ptp(x), 1e-12), degree + 1)
    coef, *_ = np.linalg.lstsq(basis, profiles.T, rcond=None)
    return profiles - (basis @ coef).T


def _peaks(profiles: np.ndarray, lags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Refined argmax lag of each row of (n, n_lags); also whether it sits on an end."""
    step = _lag_step(lags)
    idx = np.argmax(profiles, axis=1)
    rows = np.arange(len(profiles))
    inner = (idx > 0) & (idx < profiles.shape[1] - 1)
    off = np.zeros(len(profiles))
    i = idx[inner]
    off[inner] = _parabolic_offset(
        profiles[rows[inner], i - 1], profiles[rows[inner], i], profiles[rows[inner], i + 1]
    )
    return lags[idx] + off * step, ~inner


def peak_of(profile: np.ndarray, lags: np.ndarray | None = None) -> float:
    """Refined peak lag of one profile of shape (n_lags,): argmax, then the vertex of the
    parabola through it and its two neighbours (no refinement at either end)."""
    profile = np.asarray(profile, dtype=np.float64)
    lags = np.arange(len(profile), dtype=np.float64) if lags is None else np.asarray(lags, float)
    return float(_peaks(profile[None], lags)[0][0])


def _acf_periods(
    profiles: np.ndarray, lags: np.ndarray, detrend: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Period (lag units) of each row of (n, n_lags) and the ACF height there.

    Rows without an ACF peak get period NaN and height 0. See :func:`period_of`.
    """
    step = _lag_step(lags)
    x = _detrend(profiles, lags, detrend)
    x = x - x.mean(axis=1, keepdims=True)
    n = x.shape[1]
    max_shift = (2 * n) // 3
    power = (x**2).mean(axis=1)
    acf = np.stack([(x[:, : n - m] * x[:, m:]).mean(axis=1) for m in range(max_shift + 1)], 1)
    acf = np.divide(acf, power[:, None], out=np.zeros_like(acf), where=power[:, None] > 0)
    periods = np.full(len(x), np.nan)
    heights = np.zeros(len(x))
    for row, a in enumerate(acf):
        negative = np.flatnonzero(a < 0)
        if len(negative) == 0:
            continue
        for m in range(max(negative[0], 2), max_shift):
            if a[m] > a[m - 1] and a[m] >= a[m + 1] and a[m] > 0:
                off = _parabolic_offset(a[m - 1 : m], a[m : m + 1], a[m + 1 : m + 2])[0]
                periods[row] = (m + off) * step
                heights[row] = a[m]
                break
    return periods, heights


def period_of(
    profile: np.ndarray, lags: np.ndarray | None = None, detrend: int | None = 1
) -> tuple[float, float]:
    """Period of one profile of shape (n_lags,), in lag units, and its autocorrelation.

    Method: remove a least-squares polynomial trend of degree ``detrend``; autocorrelation of
    the residual (shift m: mean of the n - m overlapping products over the mean square — the
    unbiased form, which does not pull the peak towards short shifts; shifts up to 2/3 of the
    length); the period is the first local maximum of the ACF that follows its first negative
    value and is positive, refined by a parabola through the neighbouring shifts. Returns
    (period, ACF there); (NaN, 0.0) when no such maximum exists. On noise-free damped or
    trended cosines the bias is a few hundredths of a lag. Whether the ACF height is more than
    noise would give is judged in :func:`estimate_peak` by a permutation null.
    """
    profile = np.asarray(profile, dtype=np.float64)
    lags = np.arange(len(profile), dtype=np.float64) if lags is None else np.asarray(lags, float)
    period, height = _acf_periods(profile[None], lags, detrend)
    return float(period[0]), float(height[0])


@dataclass(frozen=True)
class PeakEstimate:
    """Result of :func:`estimate_peak`; lags in the units of the ``lags`` argument.

    Attributes
    ----------
    lags, profile : arrays of shape (n_window,) — the lags searched and the mean r there.
    peak : refined peak lag of the (optionally detrended) profile.
    peak_ci : (low, high) percentile bootstrap interval of the peak.
    support : fraction of bootstrap peaks within one lag step of ``peak``.
    at_edge : the argmax is the first or last lag of the window (no interior peak).
    found : a peak is claimed — not at an edge, ``peak_ci`` no wider than ``max_ci_width`` and
        ``support >= min_support``.
    period : period of the profile (:func:`period_of`), NaN when none.
    period_ci : (low, high) percentile bootstrap interval over the resamples with a period.
    period_acf : the detrended profile's autocorrelation at ``period`` (0 when none).
    period_p : permutation p-value of ``period_acf`` (the profile's lag order shuffled
        ``n_perm`` times, same statistic): small means more periodic than a structureless
        profile of the same values.
    period_found : fraction of bootstrap resamples whose ACF peak exceeds the permutation
        null's ``ci`` quantile.
    boot_peaks, boot_periods : arrays of shape (n_boot,) — the bootstrap values.
    n_groups : number of resampling units (images).
    """

    lags: np.ndarray
    profile: np.ndarray
    peak: float
    peak_ci: tuple[float, float]
    support: float
    at_edge: bool
    found: bool
    period: float
    period_ci: tuple[float, float]
    period_acf: float
    period_p: float
    period_found: float
    boot_peaks: np.ndarray
    boot_periods: np.ndarray
    n_groups: int


def estimate_peak(
    products: np.ndarray,
    lags: Sequence[float] | None = None,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    rng: np.random.Generator | int | None = None,
    window: tuple[float, float] | None = None,
    ci: float = 0.95,
    peak_detrend: int | None = None,
    period_detrend: int = 1,
    max_ci_width: float = 4.0,
    min_support: float = 0.5,
    n_perm: int = 1000,
) -> PeakEstimate:
    """Peak lag and period of the lag profile, with a bootstrap over test images.

    Parameters
    ----------
    products : array of shape (n_lags, n_trials) — per-trial products (:func:`lag_products`),
        NaN where a trial is not scored at a lag. ``nanmean(products[k])`` is lag k's mean r.
    lags : lag value per row (default 0 .. n_lags - 1), evenly spaced.
    groups : array of shape (n_trials,) — resampling unit per trial, normally the trial's
        (current) image, so repeats of an image are drawn together; None: each trial alone.
    n_boot : bootstrap resamples. Each draws ``n_groups`` groups with replacement, recomputes
        every lag's mean r from the same draw, and takes the peak and the period of that
        profile.
    rng : Generator or seed.
    window : (low, high) — only lags in this closed range are searched (e.g. ``(2, 32)`` to
        leave out the current and the previous image, which dominate the raw profile).
    ci : coverage of the percentile intervals.
    peak_detrend : polynomial degree removed before the argmax (None: raw profile).
    period_detrend : polynomial trend degree removed before the autocorrelation.
    max_ci_width, min_support : thresholds of ``found`` (see :class:`PeakEstimate`).
    n_perm : permutations of the lag order for the periodicity null (``period_p``).
    """
    products = np.asarray(products, dtype=np.float64)
    if products.ndim != 2:
        raise ValueError(f"products must have shape (n_lags, n_trials), got {products.shape}")
    lags_all = np.arange(products.shape[0], dtype=float) if lags is None else np.asarray(lags, float)
    if lags_all.shape != (products.shape[0],):
        raise ValueError(f"lags must have shape ({products.shape[0]},), got {lags_all.shape}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    keep = np.ones(len(lags_all), bool)
    if window is not None:
        keep = (lags_all >= window[0]) & (lags_all <= window[1])
    lags_w = lags_all[keep]
    step = _lag_step(lags_w)
    sums, counts = group_sums(products[keep], groups)
    if np.any(counts.sum(axis=1) == 0):
        raise ValueError("some lag in the window has no scored trial (all products NaN)")
    n_groups = sums.shape[1]
    rng = np.random.default_rng(rng)

    profile = sums.sum(axis=1) / counts.sum(axis=1)
    weights = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (weights @ sums.T) / (weights @ counts.T)  # (n_boot, n_window)
    boot = np.where(np.isfinite(boot), boot, profile)  # a lag missed by a draw keeps its mean

    both = np.vstack([profile, boot])
    peaks, edge = _peaks(_detrend(both, lags_w, peak_detrend), lags_w)
    periods, heights = _acf_periods(both, lags_w, period_detrend)
    perm = np.stack([rng.permutation(profile) for _ in range(max(int(n_perm), 1))])
    null = _acf_periods(perm, lags_w, period_detrend)[1]
    period_p = float((1 + np.sum(null >= heights[0])) / (1 + len(null)))
    crit = float(np.quantile(null, ci))
    q = [50 * (1 - ci), 50 * (1 + ci)]
    peak_ci = tuple(float(v) for v in np.percentile(peaks[1:], q))
    support = float(np.mean(np.abs(peaks[1:] - peaks[0]) <= step))
    boot_periods = periods[1:][np.isfinite(periods[1:])]
    period_ci = (
        tuple(float(v) for v in np.percentile(boot_periods, q))
        if len(boot_periods)
        else (np.nan, np.nan)
    )
    found = bool(
        not edge[0] and peak_ci[1] - peak_ci[0] <= max_ci_width and support >= min_support
    )
    return PeakEstimate(
        lags=lags_w,
        profile=profile,
        peak=float(peaks[0]),
        peak_ci=peak_ci,
        support=support,
        at_edge=bool(edge[0]),
        found=found,
        period=float(periods[0]),
        period_ci=period_ci,
        period_acf=float(heights[0]),
        period_p=period_p,
        period_found=float(np.mean(heights[1:] > crit)),
        boot_peaks=peaks[1:],
        boot_periods=periods[1:],
        n_groups=n_groups,
    )
