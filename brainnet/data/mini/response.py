"""Simulated single-trial betas of nsd-mini from the planted cortex (see :mod:`synth_cortex`).

Per vertex v and stimulus trial t (session s, image i_t), in noise units, then scaled to
percent signal change by a per-vertex gain:

    beta = gain_v * (offset_vs + drift_vs(t) + sig_img_v * z_vis_v(i_t) + sig_mem_v * m(t)
                     + sig_ans_v * a(t) + noise_level * eps),   eps ~ N(0, 1)

``z_vis`` is the visual drive standardised over the stimulus pool, ``m`` the memory trace
(sum over k = 1..32 slots back in the same run of profile[k] * feature of that slot's image,
blank slots and slots before the run start giving 0), ``a`` the answer drive (button and RT),
both standardised over the subject's trials. The planted image-locked ncsnr is therefore
``sig_img / sqrt(noise_level^2 + E[drift^2] + sig_mem^2 + sig_ans^2)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from .cortex import Cortex
from .scratch import RowStore, index_blocks
from .truth import KIND_ANSWER, KIND_MEMORY, KIND_VISUAL

N_MEMORY_LAGS = 32
DRIFT_SD = 0.3  # sd of the drift amplitude (noise units); the trend spans [-a, a] over a session
OFFSET_SD = 1.0  # sd of per-session offsets (noise units)
SIGMA_MEMORY = 0.8
SIGMA_ANSWER = 0.8
SIGMA_IMAGE_NONVISUAL = 0.15
#: b2 (``betas_fithrf``, no GLMdenoise) = b3 plus this much extra trial noise (noise units, times the gain).
B2_EXTRA_NOISE = 0.6


def memory_lag_profile(n_lags: int = N_MEMORY_LAGS) -> np.ndarray:
    """Planted memory lag profile, float32 (n_lags + 1,): entry k weighs the image k slots back.

    A damped periodic profile ``cos(2 pi (k - 6.3) / 13) * exp(-|k - 6.3| / 12)`` for k >= 1:
    its largest value and largest magnitude are at k = 6 (0.97; k = 7: 0.89), troughs near
    k = 0 and 13, a second lobe near k = 19; entry 0 (the current image) is 0.
    """
    k = np.arange(n_lags + 1, dtype=np.float64)
    prof = np.cos(2 * np.pi * (k - 6.3) / 13.0) * np.exp(-np.abs(k - 6.3) / 12.0)
    prof[0] = 0.0
    return prof.astype(np.float32)


def rf_weights(rf_x: np.ndarray, rf_y: np.ndarray, rf_size: np.ndarray, grid: int) -> np.ndarray:
    """Gaussian receptive fields sampled at the grid cell centres.

    Returns float32 (n_vertices, grid * grid), rows sum to 1; cell (row i, col j) is flattened
    as i * grid + j, row i at y = (i + 0.5) / grid * 2 - 1 (y down).
    """
    c = (np.arange(grid) + 0.5) / grid * 2.0 - 1.0
    gy, gx = np.meshgrid(c, c, indexing="ij")
    d2 = (gx.ravel()[None, :] - rf_x[:, None]) ** 2 + (gy.ravel()[None, :] - rf_y[:, None]) ** 2
    w = np.exp(-d2 / (2.0 * np.maximum(rf_size[:, None], 1e-3) ** 2))
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def _zscore_cols(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0)
    return ((x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def visual_drive(energy: np.ndarray, categories: np.ndarray, cortex: Cortex, vertices: np.ndarray) -> np.ndarray:
    """Standardised visual drive of selected vertices for every pool image.

    Args:
        energy: (n_images, G, G) energy maps.
        categories: (n_images, 4, G, G) category coverage maps.
        cortex: the planted hemisphere.
        vertices: int array (n,) of vertex indices.

    Returns:
        float32 (n_images, n): ``(1 - g) z(E) + g sum_c w_c z(C_c)``, standardised over images.
    """
    n_img, grid = energy.shape[0], energy.shape[-1]
    w = rf_weights(cortex.rf_x[vertices], cortex.rf_y[vertices], cortex.rf_size[vertices], grid)
    e = _zscore_cols(energy.reshape(n_img, -1) @ w.T)
    mix = cortex.category_mix[vertices][None, :]
    cw = cortex.category_weights[vertices]
    cat = np.zeros_like(e)
    flat = categories.reshape(n_img, 4, -1)
    for c in range(4):
        cat += cw[None, :, c] * _zscore_cols(flat[:, c] @ w.T)
    return _zscore_cols((1.0 - mix) * e + mix * cat)


def memory_trace(slots: np.ndarray, feature: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """Memory drive of each stimulus trial.

    Args:
        slots: int (n_sessions, 12, 75), pool id per slot, -1 blank.
        feature: float (n_pool,), the remembered image feature.
        profile: float (n_lags + 1,), weight of the image k slots back (entry 0 unused).

    Returns:
        float64 (n_trials,) in time order, standardised over trials.
    """
    f = np.where(slots >= 0, feature[np.maximum(slots, 0)], 0.0)
    out = np.zeros_like(f)
    for k in range(1, len(profile)):
        out[..., k:] += profile[k] * f[..., :-k]
    m = out[slots >= 0]
    return (m - m.mean()) / m.std()


def answer_drive(responses: pd.DataFrame) -> np.ndarray:
    """Answer drive per trial: +1 for button 2 ('old'), -1 for button 1, 0 for no press, plus
    0.6 x z(log RT) (0 without press); standardised over trials. Uses the answers as given
    (call before blanking a MISSINGDATA run). Returns float64 (n_trials,)."""
    button = responses["BUTTON"].to_numpy(dtype=float, na_value=np.nan)
    rt = responses["RT"].to_numpy(dtype=float, na_value=np.nan)
    b = np.where(button == 2, 1.0, np.where(button == 1, -1.0, 0.0))
    lrt = np.log(rt)
    z = np.where(np.isfinite(lrt), (lrt - np.nanmean(lrt)) / np.nanstd(lrt), 0.0)
    a = b + 0.6 * z
    return (a - a.mean()) / a.std()


def vertex_sigmas(cortex: Cortex, ncsnr_range: tuple[float, float], noise_level: float, subject_factor: float):
    """Per-vertex signal amplitudes (noise units) and the planted image-locked ncsnr.

    Returns:
        dict of float32 (n_vertices,) arrays: sigma_image, sigma_memory, sigma_answer, ncsnr.
    """
    lo, hi = ncsnr_range
    n = cortex.kind.shape[0]
    noise_var = noise_level**2 + DRIFT_SD**2 / 3.0
    sig_mem = np.where(cortex.kind == KIND_MEMORY, SIGMA_MEMORY, 0.0)
    sig_ans = np.where(cortex.kind == KIND_ANSWER, SIGMA_ANSWER, 0.0)
    other = np.sqrt(noise_var + sig_mem**2 + sig_ans**2)
    target = (lo + (hi - lo) * cortex.ncsnr_scale) * subject_factor
    sig_img = np.where(cortex.kind == KIND_VISUAL, target * other, 0.0)
    sig_img = np.where((cortex.kind == KIND_MEMORY) | (cortex.kind == KIND_ANSWER), SIGMA_IMAGE_NONVISUAL, sig_img)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return {
        "sigma_image": f32(sig_img), "sigma_memory": f32(sig_mem), "sigma_answer": f32(sig_ans),
        "ncsnr": f32(sig_img / other) if n else f32([]),
    }


def session_betas(
    rng: np.random.Generator,
    n_vertices: int,
    signal_vertices: np.ndarray,
    z_vis_trials: np.ndarray,
    memory: np.ndarray,
    answer: np.ndarray,
    sig: dict,
    gain: np.ndarray,
    noise_level: float,
) -> np.ndarray:
    """Betas of one session and hemisphere in percent signal change.

    Args:
        rng: random generator of this (subject, session, hemisphere).
        n_vertices: vertices of the hemisphere's mesh.
        signal_vertices: int (n_sig,), vertices carrying signal (the others are noise only).
        z_vis_trials: float32 (n_trials, n_sig), visual drive of each trial's image.
        memory, answer: float (n_trials,), memory and answer drives of the session's trials.
        sig: output of :func:`vertex_sigmas` (full-length arrays).
        gain: float32 (n_vertices,), percent signal change per noise unit.
        noise_level: trial-noise sd (noise units).

    Returns:
        float32 (n_vertices, n_trials).
    """
    n_trials = z_vis_trials.shape[0]
    b = rng.standard_normal((n_vertices, n_trials), dtype=np.float32)
    b *= np.float32(noise_level)
    for cols in index_blocks(len(signal_vertices), n_trials, itemsize=8):  # bounded temporaries, same values
        sv = signal_vertices[cols]
        sigpart = (z_vis_trials[:, cols] * sig["sigma_image"][sv][None, :]).T
        sigpart += np.outer(sig["sigma_memory"][sv], memory).astype(np.float32)
        sigpart += np.outer(sig["sigma_answer"][sv], answer).astype(np.float32)
        b[sv] += sigpart
    offset = rng.normal(0.0, OFFSET_SD, size=n_vertices).astype(np.float32)
    drift = rng.normal(0.0, DRIFT_SD, size=n_vertices).astype(np.float32)
    ramp = np.linspace(-1.0, 1.0, n_trials, dtype=np.float32)
    for rows in index_blocks(n_vertices, n_trials):
        b[rows] += offset[rows, None] + drift[rows, None] * ramp[None, :]
    b *= gain[:, None]
    b += np.float32(0.3)
    return b


def zscore_session(b: np.ndarray) -> np.ndarray:
    """z-score each row (vertex) over the session's trials, ddof 0. b: (n_vertices, n_trials) -> float32, same shape."""
    z = np.empty(b.shape, dtype=np.float32)
    for rows in index_blocks(b.shape[0], b.shape[1]):  # row by row the same values, bounded temporaries
        x = b[rows]
        mu = x.mean(axis=1, keepdims=True)
        sd = x.std(axis=1, keepdims=True)
        z[rows] = (x - mu) / np.where(sd > 0, sd, 1.0)
    return z


def ncsnr_from_repeats(sum_sq: np.ndarray, sum_x2: np.ndarray, n_images: int) -> np.ndarray:
    """ncsnr by the NSD formula from sums over images with exactly 3 repeats.

    Args:
        sum_sq: float64 (n_vertices,), the sum over images of the squared per-image sums of the
            3 z-scored responses (images in row order, see :meth:`RepeatSums.ncsnr`).
        sum_x2: float64 (n_vertices,), the sum of squared z-scored responses over those trials.
        n_images: number of images.

    Returns:
        float32 (n_vertices,): ``sqrt(max(0, 1 - v^2)) / v`` with ``v^2`` the mean over images of
        the across-repeat variance (ddof 1).
    """
    var_sum = (sum_x2 - sum_sq / 3.0) / 2.0  # sum over images of ddof-1 variances
    v2 = var_sum / n_images
    v = np.sqrt(np.maximum(v2, 1e-12))
    return (np.sqrt(np.maximum(0.0, 1.0 - v2)) / v).astype(np.float32)


def _image_rows(image_row: np.ndarray, dtype) -> tuple[np.ndarray, sparse.csr_matrix]:
    """The distinct rows of ``image_row`` (int [T], all >= 0) and the (n_rows, T) 0/1 matrix of ``dtype``
    that sums each row's trials (trials in time order within a row)."""
    rows, local = np.unique(image_row, return_inverse=True)
    n = len(image_row)
    return rows, sparse.csr_matrix((np.ones(n, dtype=dtype), (local, np.arange(n))), shape=(len(rows), n))


class RepeatSums:
    """Running sums over sessions for :func:`ncsnr_from_repeats` (images shown exactly 3 times).

    The per-image sums (n_images x n_units, float32) live in a :class:`RowStore`: in a scratch
    file when ``path`` is given, so that only the rows of one session are held in memory.

    Args:
        n_images: images with exactly 3 showings; n_units: vertices or voxels.
        path: scratch file of the per-image sums, or None to keep them in memory.
    """

    def __init__(self, n_images: int, n_units: int, path: Path | None = None):
        self.n_images = n_images
        self.sum_x = RowStore((n_images, n_units), np.float32, path)
        self.sum_x2 = np.zeros(n_units, dtype=np.float64)

    def add(self, z: np.ndarray, rep3_row: np.ndarray) -> None:
        """Add one session: z float32 [n_units, T] z-scored betas, rep3_row int [T] (-1: not a 3-repeat image)."""
        m = rep3_row >= 0
        if not m.any():
            return
        rows, S = _image_rows(rep3_row[m], np.float32)
        for cols in index_blocks(z.shape[0], z.shape[1], itemsize=8):
            zc = z[cols][:, m]
            self.sum_x.add(rows, cols, np.asarray(S @ zc.T))
            self.sum_x2[cols] += (zc.astype(np.float64) ** 2).sum(axis=1)

    def ncsnr(self) -> np.ndarray:
        """float32 [n_units] ncsnr by the NSD formula; drops the per-image sums."""
        sum_sq = np.zeros(self.sum_x.shape[1], dtype=np.float64)
        for block in self.sum_x.row_blocks():
            for row in block:  # images in row order, one at a time
                sum_sq += row.astype(np.float64) ** 2
        self.sum_x.close()
        return ncsnr_from_repeats(sum_sq, self.sum_x2, self.n_images)


class ImageMeans:
    """Per-image means of z-scored responses over the training sessions (Algonauts training fMRI).

    Sums (float64) and counts are kept per image; the sums live in a :class:`RowStore` (a scratch
    file when ``path`` is given).

    Args:
        n_images: training images; n_units: selected vertices.
        path: scratch file of the sums, or None to keep them in memory.
    """

    def __init__(self, n_images: int, n_units: int, path: Path | None = None):
        self.sums = RowStore((n_images, n_units), np.float64, path)
        self.counts = np.zeros(n_images, dtype=np.int64)

    def add(self, z: np.ndarray, image_row: np.ndarray) -> None:
        """Add one training session: z float32 [n_units, T], image_row int [T] (row of each trial's image)."""
        rows, S = _image_rows(image_row, np.float64)
        for cols in index_blocks(z.shape[0], z.shape[1], itemsize=8):
            self.sums.add(rows, cols, np.asarray(S @ z[cols].T.astype(np.float64)))
        self.counts += np.bincount(image_row, minlength=len(self.counts))

    def mean_blocks(self) -> Iterator[np.ndarray]:
        """float32 blocks (rows, n_units) of the means, images in row order; drops the sums at the end."""
        start = 0
        for block in self.sums.row_blocks():
            yield (block / self.counts[start:start + len(block), None]).astype(np.float32)
            start += len(block)
        self.sums.close()
