"""Memory replay: how well does the image seen k slots earlier predict the current response?

The Memory Encoding Model paper fits, for every lag k (0 = the current image, k = the image k
run slots earlier, blank slots counted), a model that sees *only* that one image, plus a
shuffled-image control, and scores it per vertex on held-out trials. The curve of mean r
against k showed a periodic delayed response peaking at the 6th-7th previous image. This module
holds the maths around those models (the training loop per lag lives elsewhere):

* :func:`lag_design` — which image is each trial's lag-k predictor (and the shuffled control);
* :func:`per_trial_products` / :func:`lag_products` — per-trial contributions to the mean
  Pearson r, the unit that the bootstrap resamples;
* :func:`lag_profile` — per-ROI mean r against lag;
* :func:`estimate_peak` — peak lag and period of the profile, with bootstrap CIs over test
  images;
* :func:`control_at_chance` — is the shuffled control at chance?

Why per-trial products
----------------------
With predictions ``p`` and responses ``y`` z-scored per vertex over the test trials (population
sd), Pearson ``r_v = mean_t zp[t, v] * zy[t, v]``, hence the mean over vertices
``mean_v r_v = mean_t q_t`` with ``q_t = mean_v zp[t, v] * zy[t, v]``. The vector ``q`` (one
number per test trial and lag) is small, and resampling test images and averaging their ``q``
recomputes the per-lag score of that resample (to first order: the z-scoring is not redone per
resample). The bootstrap in :func:`estimate_peak` therefore resamples *images* (all trials of
an image together, as the splits are image-disjoint), recomputes the whole lag profile from the
same resample for every lag, and takes the peak (and the period) of each resampled profile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "ChanceTest",
    "PeakEstimate",
    "control_at_chance",
    "estimate_peak",
    "lag_design",
    "lag_products",
    "lag_profile",
    "peak_of",
    "per_trial_products",
    "period_of",
]


# --------------------------------------------------------------------------- design


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


# --------------------------------------------------------------------------- scores


def _zscore_columns(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0)
    sd = np.sqrt((x**2).mean(axis=0))
    return np.divide(x, sd, out=np.zeros_like(x), where=sd > 0)


def per_trial_products(pred: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Per-trial contributions ``q`` to the vertex-mean Pearson r.

    Parameters
    ----------
    pred, obs : arrays of shape (n_trials, n_vertices) — predictions and measured responses of
        the scored (test) trials.

    Returns
    -------
    q : float64 array of shape (n_trials,), ``q_t = mean_v zp[t, v] * zy[t, v]`` with per-vertex
        z-scores over the trials (population sd; a constant vertex contributes 0), so that
        ``q.mean() == mean_v pearson_r(pred[:, v], obs[:, v])``.
    """
    pred = np.asarray(pred)
    obs = np.asarray(obs)
    if pred.ndim != 2 or pred.shape != obs.shape:
        raise ValueError(
            f"pred and obs must be 2-D arrays of the same shape (n_trials, n_vertices), got "
            f"{pred.shape} and {obs.shape}"
        )
    if pred.shape[0] < 2:
        raise ValueError(f"need at least 2 trials to correlate, got {pred.shape[0]}")
    return (_zscore_columns(pred) * _zscore_columns(obs)).mean(axis=1)


def lag_products(
    predictions: Sequence[np.ndarray], obs: np.ndarray, trial_masks: np.ndarray
) -> np.ndarray:
    """Stack :func:`per_trial_products` of every lag into one (n_lags, n_trials) array.

    Parameters
    ----------
    predictions : n_lags arrays; entry k has shape (trial_masks[k].sum(), n_vertices) — the
        lag-k model's predictions for the included trials, in trial order.
    obs : array of shape (n_trials, n_vertices) — responses of all scored trials.
    trial_masks : bool array of shape (n_lags, n_trials) — the trials each lag model scores.

    Returns
    -------
    float64 array of shape (n_lags, n_trials); NaN where a trial is not scored at that lag.
    """
    obs = np.asarray(obs)
    trial_masks = np.asarray(trial_masks, dtype=bool)
    if trial_masks.ndim != 2 or trial_masks.shape[1] != obs.shape[0]:
        raise ValueError(
            f"trial_masks must have shape (n_lags, {obs.shape[0]}), got {trial_masks.shape}"
        )
    if len(predictions) != trial_masks.shape[0]:
        raise ValueError(f"got {len(predictions)} predictions for {trial_masks.shape[0]} lags")
    out = np.full(trial_masks.shape, np.nan)
    for k, (pred, mask) in enumerate(zip(predictions, trial_masks)):
        out[k, mask] = per_trial_products(pred, obs[mask])
    return out


def lag_profile(
    r: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str] | Mapping[int, str] | None = None,
    lags: Sequence[float] | None = None,
    include_unknown: bool = False,
) -> pd.DataFrame:
    """Mean r per ROI against lag.

    Parameters
    ----------
    r : array of shape (n_lags, n_vertices) — per-vertex r of each lag model.
    labels : int array of shape (n_vertices,) — ROI code per vertex (prepared ``rois.npz``).
    names : ``names[code]`` -> ROI name (sequence or mapping); None: the code as text.
    lags : lag value of each row (default 0 .. n_lags - 1).
    include_unknown : keep code 0 ('Unknown') as a column.

    Returns
    -------
    DataFrame indexed by ``lag`` with a column ``all`` (mean over every vertex) and one column
    per ROI present in ``labels`` (ascending code order); NaN r values are ignored.
    """
    r = np.asarray(r, dtype=np.float64)
    labels = np.asarray(labels)
    if r.ndim != 2:
        raise ValueError(f"r must have shape (n_lags, n_vertices), got {r.shape}")
    if labels.shape != (r.shape[1],):
        raise ValueError(f"labels must have shape ({r.shape[1]},), got {labels.shape}")
    lags = np.arange(r.shape[0]) if lags is None else np.asarray(lags)
    if lags.shape != (r.shape[0],):
        raise ValueError(f"lags must have shape ({r.shape[0]},), got {lags.shape}")
    columns = {"all": _nanmean_rows(r)}
    for code in np.unique(labels):
        if code == 0 and not include_unknown:
            continue
        name = str(code) if names is None else str(names[int(code)])
        columns[name] = _nanmean_rows(r[:, labels == code])
    return pd.DataFrame(columns, index=pd.Index(lags, name="lag"))


def _nanmean_rows(x: np.ndarray) -> np.ndarray:
    counts = np.isfinite(x).sum(axis=1)
    sums = np.where(np.isfinite(x), x, 0.0).sum(axis=1)
    return np.divide(sums, counts, out=np.full(len(x), np.nan), where=counts > 0)


# --------------------------------------------------------------------------- peak & period


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


def _group_sums(products: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-group sums and counts of the finite products: two arrays of shape (n_lags, n_groups)."""
    n_trials = products.shape[1]
    if groups is None:
        codes = np.arange(n_trials)
    else:
        groups = np.asarray(groups)
        if groups.shape != (n_trials,):
            raise ValueError(f"groups must have shape ({n_trials},), got {groups.shape}")
        codes = np.unique(groups, return_inverse=True)[1]
    n_groups = int(codes.max()) + 1
    finite = np.isfinite(products)
    sums = np.zeros((products.shape[0], n_groups))
    counts = np.zeros((products.shape[0], n_groups))
    for k in range(products.shape[0]):
        sums[k] = np.bincount(codes, np.where(finite[k], products[k], 0.0), n_groups)
        counts[k] = np.bincount(codes, finite[k].astype(float), n_groups)
    return sums, counts


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
    sums, counts = _group_sums(products[keep], groups)
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


# --------------------------------------------------------------------------- control


@dataclass(frozen=True)
class ChanceTest:
    """Result of :func:`control_at_chance`.

    Attributes
    ----------
    mean_r : mean r of the control.
    ci : (low, high) interval of the mean r at level 1 - alpha.
    statistic : z (Fisher method) or t (image-clustered method) of the mean against 0.
    p_value : two-sided p-value of mean r = 0.
    at_chance : ``p_value >= alpha``.
    method : ``"fisher-z"`` or ``"image-clustered"``.
    n : vertices x lags pooled (fisher-z) or images (image-clustered).
    """

    mean_r: float
    ci: tuple[float, float]
    statistic: float
    p_value: float
    at_chance: bool
    method: str
    n: int


def control_at_chance(
    r_control: np.ndarray | None = None,
    n_test: int | None = None,
    *,
    products: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    alpha: float = 0.05,
) -> ChanceTest:
    """Test that the shuffled-image control's mean r is at chance (0).

    Two ways, by what is passed:

    * ``r_control`` of shape (n_vertices,) or (n_lags, n_vertices) plus ``n_test`` (test
      trials per r): Fisher-z test. Under chance each ``atanh(r)`` is ~ N(0, 1 / (n_test - 3));
      the mean over the m values is compared to N(0, 1 / (m (n_test - 3))). This treats vertices
      as independent, which they are not (spatial correlation): the null is too narrow and the
      test too ready to reject chance — strict for a control (a pass is meaningful; a failure
      over many vertices should be checked with the second way).
    * ``products`` of shape (n_trials,) or (n_lags, n_trials) (:func:`lag_products` of the
      control, NaN = not scored) plus ``groups`` (image per trial): the mean r is the ratio of
      per-image sums; its standard error is the cluster-robust (by image) one, t-test with
      n_images - 1 degrees of freedom. Honest under spatial correlation and image repeats.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if (r_control is None) == (products is None):
        raise ValueError("pass either r_control (with n_test) or products (with groups)")
    if r_control is not None:
        r = np.asarray(r_control, dtype=np.float64).ravel()
        r = r[np.isfinite(r)]
        if n_test is None or n_test < 4:
            raise ValueError(f"n_test (test trials per r) must be >= 4, got {n_test}")
        if len(r) == 0:
            raise ValueError("r_control has no finite value")
        z = np.arctanh(np.clip(r, -0.999999, 0.999999))
        se = 1.0 / np.sqrt(len(z) * (n_test - 3))
        stat = float(z.mean() / se)
        p = float(2 * stats.norm.sf(abs(stat)))
        half = stats.norm.ppf(1 - alpha / 2) * se
        ci = (float(np.tanh(z.mean() - half)), float(np.tanh(z.mean() + half)))
        return ChanceTest(float(r.mean()), ci, stat, p, p >= alpha, "fisher-z", len(z))

    q = np.asarray(products, dtype=np.float64)
    q = q[None] if q.ndim == 1 else q
    if groups is None:
        raise ValueError("products need groups (the image of each trial)")
    sums, counts = _group_sums(q, groups)
    s, c = sums.sum(axis=0), counts.sum(axis=0)
    s, c = s[c > 0], c[c > 0]
    g = len(s)
    if g < 3:
        raise ValueError(f"need at least 3 groups with scored trials, got {g}")
    mean = s.sum() / c.sum()
    se = np.sqrt(g / (g - 1) * np.sum((s - mean * c) ** 2)) / c.sum()
    stat = float(mean / se) if se > 0 else (0.0 if mean == 0 else np.inf)
    p = float(2 * stats.t.sf(abs(stat), g - 1))
    half = stats.t.ppf(1 - alpha / 2, g - 1) * se
    return ChanceTest(
        float(mean), (float(mean - half), float(mean + half)), stat, p, p >= alpha,
        "image-clustered", g,
    )
