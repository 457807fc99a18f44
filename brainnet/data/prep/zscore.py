"""z-score one session held trial-major ([T, V]) into float16, bit for bit as the reference.

:func:`~brainnet.data.prep.tables.zscore_session` defines the numbers (vertex-major, whole arrays):
per vertex ``m32 = float32(sum64(x) / T)``, ``z = float32(x - m32)``, ``s32 = float32(1 / sqrt(sum64(z * z) / T))``
(0 for a constant vertex), ``z * s32``; NaN -> 0. Betas are stored trial-major, and so is ``fmri.npy``;
:func:`zscore_trials` works in that layout, in row chunks that stay in cache, with no transpose.

Its float64 sums add the same values as the reference in another order, so they may differ in the
last bits. Both lie within ``gamma(T - 1) * sum|terms|`` of the exact sum (any summation order,
Higham, *Accuracy and Stability of Numerical Algorithms*, 4.2), so where every float64 in that interval
leads to the same float32 mean and scale, ours are the reference's. A vertex where the interval
straddles a float32 rounding boundary (a few in 10^4 on nsd-mini betas), or that holds NaN / inf, is
recomputed by the reference itself (which treats each vertex on its own). The products ``z * z`` are
exact in float64, so only the additions round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from brainnet.data.prep.tables import zscore_session

log = logging.getLogger(__name__)

#: Trials z-scored per step (a [chunk, V] float32 block plus its float64 squares stay in cache).
ROW_CHUNK = 8
_EPS64 = 2.0 ** -53


def _gamma(n: int) -> float:
    """Twice Higham's gamma_(n-1), padded: a bound of |ours - reference| / sum|terms| for n terms."""
    g = max(n - 1, 1) * _EPS64
    return 2.0 * g / (1.0 - g) * (1.0 + 1e-6)


def _widen(value: np.ndarray, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every float64 within ``radius`` of ``value`` lies in the returned [lo, hi] (one ulp outward of
    the rounded ends)."""
    return np.nextafter(value - radius, -np.inf), np.nextafter(value + radius, np.inf)


def _scale(ss: np.ndarray, n: int) -> np.ndarray:
    """The reference's 1 / std of a sum of squares (0 where std is 0): float64."""
    std = np.sqrt(ss / n)
    return np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 0.0)


@dataclass(frozen=True)
class SessionScales:
    """What z-scoring one session needs besides its betas (see :func:`session_scales`).

    Attributes:
        mean, scale: float32 [V]: the reference's per-column mean and 1 / std (0 in ``redo``'s columns).
        redo: int64 [k]: columns taken from ``exact`` (NaN / inf, or a sum too close to a rounding boundary).
        exact: float16 [T, k]: the reference's result in those columns.
        has_nan: bool [V]: the columns with NaN.
    """

    mean: np.ndarray
    scale: np.ndarray
    redo: np.ndarray
    exact: np.ndarray
    has_nan: np.ndarray


def _column_sums(x: np.ndarray) -> np.ndarray:
    """float64 [V]: the sums of the columns of ``x`` (float32 [T, V], C-contiguous), in row chunks."""
    n, v = x.shape
    sums, part = np.zeros(v, np.float64), np.empty(v, np.float64)
    with np.errstate(all="ignore"):
        for a in range(0, n, ROW_CHUNK):
            sums += np.add.reduce(x[a:a + ROW_CHUNK], axis=0, dtype=np.float64, out=part)
    return sums


def _in_halves(n: int, work: Callable[[int, int], object], pool: Executor | None) -> list:
    """``work(a, b)`` over rows [0, n) in one call, or, given ``pool``, over the first half of the
    rows (whole ``ROW_CHUNK`` blocks) on the pool while the caller does the second: results in row order."""
    half = (n // 2) // ROW_CHUNK * ROW_CHUNK
    if pool is None or half == 0:
        return [work(0, n)]
    first = pool.submit(work, 0, half)
    try:
        second = work(half, n)
    finally:
        done = first.result()
    return [done, second]


def _sum_squares(x: np.ndarray, m32: np.ndarray, a: int, b: int) -> np.ndarray:
    """float64 [V]: the column sums of ``(x - m32) ** 2`` over rows [a, b), the differences rounded to
    float32 as the reference's, in row chunks."""
    z = np.empty((min(ROW_CHUNK, b - a), x.shape[1]), np.float32)
    ss = np.zeros(x.shape[1], np.float64)
    with np.errstate(all="ignore"):
        for c in range(a, b, ROW_CHUNK):
            d = min(c + ROW_CHUNK, b)
            np.subtract(x[c:d], m32, out=z[: d - c])
            ss += np.einsum("ij,ij->j", z[: d - c], z[: d - c], dtype=np.float64)
    return ss


def session_scales(x: np.ndarray, pool: Executor | None = None) -> SessionScales:
    """The per-column mean and scale of one session held trial-major, as the reference computes them.

    Args:
        x: float32 [T, V], C-contiguous: the session's betas, trial by trial (NaN allowed); only read.
        pool: an executor that sums (and sums the squares of) half the rows while the caller does the
            other half (another order of float64 additions: the bounds below hold for any).
    """
    n, v = x.shape
    sums = sum(_in_halves(n, lambda a, b: _column_sums(x[a:b]), pool))
    with np.errstate(all="ignore"):
        suspect = ~np.isfinite(sums)  # NaN / inf in the column
        m32 = np.where(suspect, 0.0, sums / n).astype(np.float32)
        ss = sum(_in_halves(n, lambda a, b: _sum_squares(x, m32, a, b), pool))
        g = _gamma(n)
        # sum|x| <= sum|x - m32| + n |m32| <= sqrt(n * ss) (1 + 2^-23) + n |m32| (z = x - m32 rounded to
        # float32: relative error 2^-24, or 2^-150 absolute where the difference is subnormal)
        abs_sum = (np.sqrt(n * ss) * (1 + 2.0 ** -22) + n * (np.abs(m32.astype(np.float64)) + 2.0 ** -149)) * (1 + 1e-9)
        lo, hi = _widen(sums, g * abs_sum)
        certain = (lo / n).astype(np.float32) == (hi / n).astype(np.float32)
        lo, hi = _widen(ss, g * ss * (1 + 1e-9))
        s32 = _scale(ss, n).astype(np.float32)
        certain &= _scale(np.maximum(lo, 0.0), n).astype(np.float32) == _scale(hi, n).astype(np.float32)
    redo = np.flatnonzero(suspect | ~certain | ~np.isfinite(ss))
    log.debug("z-scoring %d x %d: %d columns by the reference", n, v, redo.size)
    has_nan = np.zeros(v, bool)
    exact, has_nan[redo] = zscore_session(np.ascontiguousarray(x[:, redo].T), copy=False)
    s32[redo] = 0
    m32[redo] = 0
    return SessionScales(mean=m32, scale=s32, redo=redo, exact=exact.T.astype(np.float16), has_nan=has_nan)


def _zscore_range(x: np.ndarray, scales: SessionScales, emit: Callable[[int, np.ndarray], None],
                  first: int, last: int) -> None:
    """:func:`zscore_rows` of rows [first, last)."""
    z = np.empty((min(ROW_CHUNK, last - first), x.shape[1]), np.float32)
    rows = np.empty(z.shape, np.float16)
    for a in range(first, last, ROW_CHUNK):
        b = min(a + ROW_CHUNK, last)
        with np.errstate(all="ignore"):  # NaN / inf in the columns taken from ``exact``
            np.subtract(x[a:b], scales.mean, out=z[: b - a])
            np.multiply(z[: b - a], scales.scale, out=z[: b - a])
            rows[: b - a] = z[: b - a]
        rows[: b - a, scales.redo] = scales.exact[a:b]
        emit(a, rows[: b - a])


def zscore_rows(x: np.ndarray, scales: SessionScales, emit: Callable[[int, np.ndarray], None],
                pool: Executor | None = None) -> None:
    """Hand on ``(x - mean) * scale`` of one session as float16 rows, the ``redo`` columns from ``exact``.

    Args:
        x: float32 [T, V]: the session's betas (as given to :func:`session_scales`); only read.
        emit: called as ``emit(first_row, rows)`` with blocks of the result (float16 [n, V],
            ``ROW_CHUNK`` rows or fewer, a reused buffer: write it before returning), each row once.
        pool: an executor that z-scores the first half of the rows while the caller does the second;
            ``emit`` is then called from both threads, in row order within each half.
    """
    _in_halves(x.shape[0], lambda a, b: _zscore_range(x, scales, emit, a, b), pool)


def zscore_trials(x: np.ndarray, emit: Callable[[int, np.ndarray], None], pool: Executor | None = None) -> np.ndarray:
    """:func:`session_scales` then :func:`zscore_rows` (``pool`` as theirs); returns has_nan bool [V]."""
    scales = session_scales(x, pool=pool)
    zscore_rows(x, scales, emit, pool)
    return scales.has_nan
