"""What goes into a token-cache row: images decoded and resized to the backbone's input size
(:func:`load_resized`), local token maps pooled (:func:`pool_map`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

RESIZE_METHOD = "PIL.BILINEAR"  # PIL's bilinear resize filters over the source footprint (antialiased)


def _to_uint8_hwc(item: Any) -> np.ndarray:
    """One image (array [H, W, 3] / [H, W] uint8 or float in [0, 1], PIL image, or file path) -> uint8 [H, W, 3]."""
    if isinstance(item, (str, os.PathLike)):
        with Image.open(item) as im:
            return np.asarray(im.convert("RGB"))
    if isinstance(item, Image.Image):
        return np.asarray(item.convert("RGB"))
    arr = np.asarray(item)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"an image must have shape (H, W, 3) or (H, W), got {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {arr.dtype}")
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return arr


def load_resized(item: Any, size: int) -> torch.Tensor:
    """Decode one image and resize it to ``size`` x ``size``; uint8 tensor [3, size, size]."""
    arr = _to_uint8_hwc(item)
    if arr.shape[0] != size or arr.shape[1] != size:
        arr = np.asarray(Image.fromarray(np.ascontiguousarray(arr)).resize((size, size), Image.Resampling.BILINEAR))
    return torch.from_numpy(np.require(arr, requirements=["C", "W"])).permute(2, 0, 1).contiguous()


def pool_map(t: torch.Tensor, pool: int | None) -> torch.Tensor:
    """Adaptive average pool [B, C, H, W] to at most pool x pool (smaller grids kept)."""
    if pool is None or (t.shape[-1] <= pool and t.shape[-2] <= pool):
        return t
    return F.adaptive_avg_pool2d(t, (min(t.shape[-2], pool), min(t.shape[-1], pool)))
