"""Image identification from predicted responses: which image's prediction matches a measured response.

Conventions: predicted and measured responses are arrays of shape (n_images, n_vertices), row i of
both belonging to image i.
"""

from __future__ import annotations

import numpy as np

from .metrics import _to_numpy


def correlation_matrix(a, b) -> np.ndarray:
    """Pearson r between every row of ``a`` (N, V) and every row of ``b`` (M, V): (N, M)."""
    a = _to_numpy(a, "a").astype(np.float64)
    b = _to_numpy(b, "b").astype(np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be (N, V) and (M, V), got {a.shape} and {b.shape}")
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    na[na == 0] = np.inf
    nb[nb == 0] = np.inf
    return (a / na[:, None]) @ (b / nb[:, None]).T


def identification_ranks(pred, measured) -> np.ndarray:
    """Rank of the true image among all candidates, for each measured response.

    Candidate j is scored for measured response i by r(pred[j], measured[i]) across vertices.

    Parameters
    ----------
    pred, measured : arrays of shape (N_img, V), row i of both belongs to image i

    Returns
    -------
    int array of shape (N_img,): 0 = the true image scored highest (ties count against it).
    """
    c = correlation_matrix(pred, measured)  # (candidate, measured)
    if c.shape[0] != c.shape[1]:
        raise ValueError(f"pred and measured must have the same number of images, got {c.shape}")
    true = np.diag(c)
    return ((c >= true[None, :]).sum(0) - 1).astype(np.int64)


def identification_accuracy(pred, measured, n_candidates: int = 300, n_draws: int = 30,
                            seed: int = 0) -> float:
    """Top-1 image identification accuracy among ``n_candidates`` (chance ``1 / n_candidates``).

    For each measured response i and each draw, ``n_candidates - 1`` distractor images are
    drawn at random (without replacement) from the others; the trial counts as correct when
    the true image's predicted response correlates with the measurement strictly better than
    every distractor's. Returns the mean over images and draws.

    Parameters
    ----------
    pred, measured : arrays of shape (N_img, V)
    n_candidates : int, 2 <= n_candidates <= N_img
    n_draws : int
    seed : int
    """
    c = correlation_matrix(pred, measured)
    n = c.shape[0]
    if c.shape[0] != c.shape[1]:
        raise ValueError(f"pred and measured must have the same number of images, got {c.shape}")
    if not 2 <= n_candidates <= n:
        raise ValueError(f"n_candidates must be in [2, {n}], got {n_candidates}")
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    rng = np.random.default_rng(seed)
    true = np.diag(c)
    scores = c.T  # scores[i, j] = r(pred[j], measured[i])
    correct = 0
    for _ in range(n_draws):
        keys = rng.random((n, n))
        np.fill_diagonal(keys, np.inf)  # never draw the true image as a distractor
        distractors = np.argpartition(keys, n_candidates - 2, axis=1)[:, :n_candidates - 1]
        best_other = np.take_along_axis(scores, distractors, axis=1).max(1)
        correct += int((true > best_other).sum())
    return correct / (n * n_draws)
