"""Memory replay: how well does the image seen k slots earlier predict the current response?

The Memory Encoding Model paper fits, for every lag k (0 = the current image, k = the image k
run slots earlier, blank slots counted), a model that sees *only* that one image, plus a
shuffled-image control, and scores it per vertex on held-out trials. The curve of mean r
against k showed a periodic delayed response peaking at the 6th-7th previous image. This module
holds the scores of those models (the design is in :mod:`.replay_design`, the peak and period
in :mod:`.replay_peak`, the fits in :mod:`brainnet.training.replay_fit`):

* :func:`per_trial_products` / :func:`lag_products` — per-trial contributions to the mean
  Pearson r, the unit that the bootstrap resamples;
* :func:`lag_profile` — per-ROI mean r against lag;
* :func:`group_sums` — per-image sums of the products (the resampling unit of the bootstrap);
* :func:`control_at_chance` — is the shuffled control at chance?

Why per-trial products
----------------------
With predictions ``p`` and responses ``y`` z-scored per vertex over the test trials (population
sd), Pearson ``r_v = mean_t zp[t, v] * zy[t, v]``, hence the mean over vertices
``mean_v r_v = mean_t q_t`` with ``q_t = mean_v zp[t, v] * zy[t, v]``. The vector ``q`` (one
number per test trial and lag) is small, and resampling test images and averaging their ``q``
recomputes the per-lag score of that resample (to first order: the z-scoring is not redone per
resample). The bootstrap in :func:`brainnet.analysis.replay_peak.estimate_peak` therefore
resamples *images* (all trials of an image together, as the splits are image-disjoint),
recomputes the whole lag profile from the same resample for every lag, and takes the peak (and
the period) of each resampled profile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "ChanceTest",
    "control_at_chance",
    "group_sums",
    "lag_products",
    "lag_profile",
    "per_trial_products",
]


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


def group_sums(products: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
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
    sums, counts = group_sums(q, groups)
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
