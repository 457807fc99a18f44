"""Evaluation metrics: per-vertex Pearson r, noise-normalised scores, ROI summaries (image
identification: :mod:`.identification`).

Two noise-normalised scores, not to be compared with each other:

* the **trial-level score** (:func:`noise_normalized_score` of a trial-level r, with the stored NC of
  the mean of 3 repeats): r over single trials, whose noise is that of one repeat, so a perfect model
  of the image-locked signal scores only 100 NC(1) / NC(3), below the challenge's number; what
  training curves and the acceptance criteria use;
* the **Algonauts challenge score** (:func:`challenge_score`): predictions and responses averaged over
  each image's repeats, r over images, NC from the images' actual repeat counts. Only this one is
  comparable with challenge leaderboard numbers.

Conventions: predictions and measurements are arrays of shape (n_samples, n_vertices);
per-vertex results have shape (n_vertices,). Functions accept NumPy arrays or torch tensors;
:func:`pearson_r` returns the input's kind, the others return NumPy arrays / Python floats.
A vertex whose prediction or measurement is constant has r = 0 (not NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from brainnet.data.noise_ceiling import noise_ceiling

NC_FLOOR = 1e-14
#: ``score_kind`` of an evaluation: noise-normalised scores (the dataset has a noise ceiling), or
#: Pearson r and r² alone (none: e.g. a dataset prepared from the Algonauts 2023 release alone).
SCORE_NOISE_NORMALIZED = "noise_normalized"
SCORE_PEARSON_R = "pearson_r"


def _to_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def _check_pair(pred, target) -> None:
    if tuple(pred.shape) != tuple(target.shape) or len(pred.shape) != 2:
        raise ValueError(f"pred and target must both be (n_samples, n_vertices), got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")


class PearsonAccumulator:
    """Streaming per-vertex Pearson r over batches (exact, numerically stable merging).

    ``update(pred, target)`` with tensors of shape (B, V) any number of times, then
    ``compute()`` -> tensor (V,) float64. Statistics are kept in float64 on the device of the
    first batch. ``merge(other)`` combines two accumulators (e.g. from several workers).
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forget all batches."""
        self.n = 0
        self._mx = self._my = self._sxx = self._syy = self._sxy = None

    def update(self, pred, target) -> None:
        """Add a batch: pred, target of shape (B, V) (torch or NumPy)."""
        p = torch.as_tensor(pred).detach().to(torch.float64)
        t = torch.as_tensor(target).detach().to(device=p.device, dtype=torch.float64)
        _check_pair(p, t)
        if self._mx is not None and p.shape[1] != self._mx.shape[0]:
            raise ValueError(f"batch has {p.shape[1]} vertices, earlier batches had {self._mx.shape[0]}")
        nb = p.shape[0]
        if nb == 0:
            return
        mx, my = p.mean(0), t.mean(0)
        dp, dt = p - mx, t - my
        stats = (nb, mx, my, (dp * dp).sum(0), (dt * dt).sum(0), (dp * dt).sum(0))
        self._merge_stats(*stats)

    def _merge_stats(self, nb, mx, my, sxx, syy, sxy) -> None:
        if self._mx is None:
            self.n, self._mx, self._my, self._sxx, self._syy, self._sxy = nb, mx, my, sxx, syy, sxy
            return
        mx, my, sxx, syy, sxy = (v.to(self._mx.device) for v in (mx, my, sxx, syy, sxy))
        n = self.n + nb
        dx, dy = mx - self._mx, my - self._my
        f = self.n * nb / n
        self._sxx = self._sxx + sxx + dx * dx * f
        self._syy = self._syy + syy + dy * dy * f
        self._sxy = self._sxy + sxy + dx * dy * f
        self._mx = self._mx + dx * nb / n
        self._my = self._my + dy * nb / n
        self.n = n

    def merge(self, other: PearsonAccumulator) -> None:
        """Add the batches seen by ``other``."""
        if other._mx is not None:
            self._merge_stats(other.n, other._mx, other._my, other._sxx, other._syy, other._sxy)

    @property
    def n_vertices(self) -> int:
        """Vertices of the batches seen (0 before the first)."""
        return 0 if self._mx is None else int(self._mx.shape[0])

    def pack(self, n_vertices: int, device=None) -> torch.Tensor:
        """The statistics as one flat float64 tensor (1 + 5 V,): n, then the means and centred sums
        (zeros, n = 0, when no batch was seen), e.g. to gather them from several processes."""
        if self._mx is None:
            return torch.zeros(1 + 5 * n_vertices, dtype=torch.float64, device=device)
        if self.n_vertices != n_vertices:
            raise ValueError(f"accumulator has {self.n_vertices} vertices, expected {n_vertices}")
        parts = (self._mx, self._my, self._sxx, self._syy, self._sxy)
        n = torch.tensor([float(self.n)], dtype=torch.float64, device=self._mx.device)
        return torch.cat([n, *(p.to(torch.float64) for p in parts)])

    def merge_packed(self, packed: torch.Tensor) -> None:
        """Add the statistics of one :meth:`pack` tensor (nothing when its n is 0)."""
        n = int(round(float(packed[0])))
        if n:
            self._merge_stats(n, *packed[1:].reshape(5, -1).unbind(0))

    def compute(self) -> torch.Tensor:
        """Per-vertex r (V,), float64; 0 where either side has zero variance."""
        if self._mx is None or self.n < 2:
            raise ValueError("need at least 2 samples to compute a correlation")
        denom = torch.sqrt(self._sxx * self._syy)
        ok = denom > 0
        return torch.where(ok, self._sxy / torch.where(ok, denom, torch.ones_like(denom)),
                           torch.zeros_like(denom))


def pearson_r(pred, target):
    """Per-vertex Pearson correlation over samples.

    Parameters
    ----------
    pred, target : arrays of shape (n_samples, n_vertices), n_samples >= 2

    Returns
    -------
    array of shape (n_vertices,), float64; a torch tensor if ``pred`` is one, else NumPy.
    Constant columns give r = 0.
    """
    acc = PearsonAccumulator()
    if isinstance(pred, torch.Tensor):
        acc.update(pred, target)
        return acc.compute()
    p, t = _to_numpy(pred, "pred"), _to_numpy(target, "target")
    acc.update(torch.from_numpy(np.ascontiguousarray(p, dtype=np.float64)),
               torch.from_numpy(np.ascontiguousarray(t, dtype=np.float64)))
    return acc.compute().numpy()


def explained_variance(r) -> np.ndarray:
    """Per-vertex r² with negative r counting as 0: ``clip(r, 0)^2`` (V,) float64 (NaN counts as 0).

    The numerator of the noise-normalised score (:func:`noise_normalized_score` is ``100 r² / NC``):
    what is left to report where there is no noise ceiling."""
    r = np.nan_to_num(_to_numpy(r, "r").astype(np.float64), nan=0.0)
    return np.clip(r, 0, None) ** 2


def noise_normalized_score(r, nc, cap: float = 100.0) -> np.ndarray:
    """Noise-normalised per-vertex score ``100 * clip(r, 0)^2 / NC``, capped at ``cap`` (the challenge's
    formula; which r and NC go in decides whether it is the challenge score: see :func:`challenge_score`).

    Parameters
    ----------
    r : array of shape (V,)
        Pearson r per vertex (NaN counts as 0).
    nc : array of shape (V,)
        Noise ceiling as a fraction in [0, 1]; 0 is replaced by 1e-14 (so any positive r
        scores ``cap``).
    cap : float

    Returns
    -------
    ndarray of shape (V,), float64, in [0, cap]
    """
    r2 = explained_variance(r)
    nc = _to_numpy(nc, "nc").astype(np.float64)
    if r2.shape != nc.shape or r2.ndim != 1:
        raise ValueError(f"r and nc must both be (V,), got {r2.shape} and {nc.shape}")
    if np.isnan(nc).any() or nc.min(initial=0.0) < 0 or nc.max(initial=0.0) > 1:
        raise ValueError("nc must be a fraction in [0, 1] without NaN (divide percentages by 100)")
    nc = np.where(nc == 0, NC_FLOOR, nc)
    return np.minimum(100.0 * r2 / nc, cap)


def mean_noise_normalized_score(r, nc, reduce: str = "mean", cap: float = 100.0) -> float:
    """Mean (or median) of :func:`noise_normalized_score` over vertices (of the r and NC given; the
    Algonauts challenge score is :func:`challenge_score`)."""
    s = noise_normalized_score(r, nc, cap)
    if reduce == "mean":
        return float(s.mean())
    if reduce == "median":
        return float(np.median(s))
    raise ValueError(f"reduce must be 'mean' or 'median', got {reduce!r}")


def image_means(values, image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average trial rows per image.

    Parameters
    ----------
    values : array of shape (n_trials, V)
    image : int array of shape (n_trials,), image id per trial

    Returns
    -------
    images (m,) sorted ids, means (m, V) float64, repeats (m,) int64 trials per image
    """
    values = _to_numpy(values, "values")
    image = _to_numpy(image, "image")
    if values.ndim != 2 or image.shape != values.shape[:1]:
        raise ValueError(f"values must be (n, V) and image (n,), got {values.shape} and {image.shape}")
    uniq, inv = np.unique(image, return_inverse=True)
    sums = np.zeros((uniq.size, values.shape[1]), np.float64)
    np.add.at(sums, inv, values)
    repeats = np.bincount(inv, minlength=uniq.size)
    return uniq, sums / repeats[:, None], repeats


@dataclass(frozen=True)
class ChallengeScore:
    """The Algonauts challenge score of one subject (see :func:`challenge_score`).

    Attributes
    ----------
    r : (V,) Pearson r over images of the image-averaged prediction and response
    nc : (V,) noise ceiling, fraction in [0, 1], for the images' repeat counts
    score : (V,) ``min(100, 100 * max(r, 0)^2 / nc)``, percent
    repeat_counts : {k: number of images shown k times}
    """

    r: np.ndarray
    nc: np.ndarray
    score: np.ndarray
    repeat_counts: dict[int, int]

    @property
    def mean(self) -> float:
        """The challenge's number: the mean of :attr:`score` over vertices."""
        return float(self.score.mean())

    @property
    def n_images(self) -> int:
        return int(sum(self.repeat_counts.values()))


def image_level_r(pred, resp, image_ids) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex Pearson r over images of trial-level predictions and responses, each first averaged
    over the image's trials: (r (V,) float64, repeats (m,) trials per image, sorted image ids).

    Parameters
    ----------
    pred, resp : arrays of shape (n_trials, V); image_ids : int array (n_trials,), >= 2 distinct
    """
    pred, resp = _to_numpy(pred, "pred"), _to_numpy(resp, "resp")
    _check_pair(pred, resp)
    _, p_img, repeats = image_means(pred, image_ids)
    _, r_img, _ = image_means(resp, image_ids)
    return pearson_r(p_img, r_img), repeats


def challenge_score(pred, resp, image_ids, ncsnr) -> ChallengeScore:
    """The Algonauts challenge's score of trial-level predictions.

    1. Average prediction and response over each image's trials (its repeats).
    2. Per vertex, Pearson r over images; r < 0 counts as 0.
    3. NC per vertex from NSD's ncsnr and the images' repeat counts:
       ``ncsnr^2 / (ncsnr^2 + (n3/3 + n2/2 + n1/1) / (n3 + n2 + n1))`` with n_k images shown k times
       (other counts enter the same way, ``sum_k n_k / k / sum_k n_k``); a fraction here, where the
       challenge code writes 100x it.
    4. Score per vertex ``min(100, 100 * r^2 / NC)`` (NC 0 -> any r > 0 scores 100); the challenge's
       number is its mean over vertices (:attr:`ChallengeScore.mean`).

    Parameters
    ----------
    pred, resp : arrays of shape (n_trials, V)
    image_ids : int array of shape (n_trials,), image per trial (at least 2 distinct images)
    ncsnr : array of shape (V,), NSD ncsnr (NaN counts as 0); from a prepared dataset,
        :attr:`brainnet.data.PreparedSubject.ncsnr`
    """
    pred, resp = _to_numpy(pred, "pred"), _to_numpy(resp, "resp")
    _check_pair(pred, resp)
    ncsnr = _to_numpy(ncsnr, "ncsnr")
    if ncsnr.shape != pred.shape[1:]:
        raise ValueError(f"ncsnr must be (V={pred.shape[1]},), got {ncsnr.shape}")
    r, repeats = image_level_r(pred, resp, image_ids)
    nc = noise_ceiling(ncsnr, repeats).astype(np.float64)
    counts = {int(k): int(n) for k, n in zip(*np.unique(repeats, return_counts=True))}
    return ChallengeScore(r=r, nc=nc, score=noise_normalized_score(r, nc), repeat_counts=counts)


def summarize(r, nc=None) -> dict[str, float]:
    """Summary numbers: mean / median r and r² (:func:`explained_variance`) and, with ``nc`` (V,), mean /
    median score (of ``r`` as given: trial-level in :func:`brainnet.training.evaluate.evaluate_predictions`,
    not the challenge score)."""
    r = np.nan_to_num(_to_numpy(r, "r").astype(np.float64), nan=0.0)
    r2 = explained_variance(r)
    out = {"mean_r": float(r.mean()), "median_r": float(np.median(r)), "mean_r2": float(r2.mean()),
           "median_r2": float(np.median(r2))}
    if nc is not None:
        s = noise_normalized_score(r, nc)
        out.update(mean_score=float(s.mean()), median_score=float(np.median(s)))
    return out


def roi_means(values, labels, names: Sequence[str], skip_unknown: bool = True) -> dict[str, float]:
    """Mean of a per-vertex value within each ROI.

    Parameters
    ----------
    values : array of shape (V,)
    labels : int array of shape (V,)
        ROI code per vertex; ``names[code]`` is its name, code 0 = 'Unknown'.
    names : sequence of str
    skip_unknown : bool
        Leave out code 0.

    Returns
    -------
    dict name -> mean (NaNs ignored), for the ROIs that have vertices, in code order.
    """
    v = _to_numpy(values, "values").astype(np.float64)
    lab = _to_numpy(labels, "labels")
    if v.shape != lab.shape or v.ndim != 1:
        raise ValueError(f"values and labels must both be (V,), got {v.shape} and {lab.shape}")
    if lab.dtype.kind not in "iub":
        raise ValueError(f"labels must be integers, got {lab.dtype}")
    if lab.size and (lab.min() < 0 or lab.max() >= len(names)):
        raise ValueError(f"labels must lie in [0, {len(names)}) to index names")
    out = {}
    for code in np.unique(lab):
        if skip_unknown and code == 0:
            continue
        sel = v[lab == code]
        out[str(names[code])] = float(np.nanmean(sel)) if np.isfinite(sel).any() else float("nan")
    return out
