"""The noise ceiling (NC) from NSD's ncsnr, written once.

NSD gives per vertex the noise-ceiling SNR ``ncsnr`` (std of the image-locked signal / std of the
trial noise). The NC of a response averaged over ``n`` repeats is the fraction of its variance the
image explains, ``ncsnr^2 / (ncsnr^2 + 1/n)``. When the scored images have different repeat counts
(Algonauts: n3 images shown 3 times, n2 twice, n1 once) the ``1/n`` term becomes its mean over the
images, ``(n3/3 + n2/2 + n1/1) / (n3 + n2 + n1)``; any counts k >= 1 generalise the same way,
``sum_k n_k / k / sum_k n_k``.

NC here is a fraction in [0, 1]; the Algonauts code writes it in percent (x 100). The prepared dataset
stores the NC for :data:`STORED_REPEATS` repeats; :func:`ncsnr_from_noise_ceiling` inverts it exactly.
"""

from __future__ import annotations

import numpy as np

#: Repeats the prepared dataset's ``noise_ceiling.npy`` is computed for (NSD shows each image up to 3 times).
STORED_REPEATS = 3


def inverse_repeat_mean(n_repeats: int | np.ndarray) -> float:
    """Mean of ``1 / n`` over the scored images: ``sum_k n_k / k / sum_k n_k``.

    Args:
        n_repeats: one repeat count for every image, or int [n_images] repeat count per image (each >= 1).
    """
    counts = np.atleast_1d(np.asarray(n_repeats))
    if counts.size == 0 or counts.dtype.kind not in "iu" or counts.min() < 1:
        raise ValueError(f"n_repeats must be integers >= 1 (one per image), got {n_repeats!r}")
    return float(np.mean(1.0 / counts))


def noise_ceiling(ncsnr: np.ndarray, n_repeats: int | np.ndarray = STORED_REPEATS) -> np.ndarray:
    """NC (fraction) of a response averaged over each image's repeats; NaN ncsnr -> 0.

    Args:
        ncsnr: float [V].
        n_repeats: repeats of every image (int), or int [n_images] repeat count of each scored image
            (then the ``1/n`` term is :func:`inverse_repeat_mean`).

    Returns:
        float32 [V] in [0, 1]: ``ncsnr^2 / (ncsnr^2 + mean_images(1 / n))``.
    """
    snr2 = np.nan_to_num(np.asarray(ncsnr, dtype=np.float64), nan=0.0) ** 2
    return (snr2 / (snr2 + inverse_repeat_mean(n_repeats))).astype(np.float32)


def ncsnr_from_noise_ceiling(nc: np.ndarray, n_repeats: int = STORED_REPEATS) -> np.ndarray:
    """ncsnr from an NC of ``n_repeats`` repeats (the inverse of :func:`noise_ceiling`).

    Args:
        nc: float [V], fraction in [0, 1] (values outside are clipped; NC 1 gives ncsnr inf).

    Returns:
        float64 [V] >= 0: ``sqrt(nc / (n (1 - nc)))``.
    """
    nc = np.clip(np.asarray(nc, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return np.sqrt(nc * inverse_repeat_mean(n_repeats) / (1.0 - nc))
