"""GPU -> host copies of token batches that do not stall the GPU, the float32 matrix-product
precision of a GPU fill, and the torch threads of the process running it.

Measured on an H200 (ViT-B/16, batches of 64, 12 layers pooled to 8x8, fp16): writing each batch
straight into the (pageable) cache arrays took 40% of the GPU's time in ``Memcpy DtoH (Device ->
Pageable)`` at ~2 GB/s, and the next forward waited for it. :class:`PinnedStaging` copies a batch
into one of two page-locked buffers with ``non_blocking`` copies and an event; the rows are written
into the store one batch later, while the GPU runs the next forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import torch

#: ``TokenCache.fill(matmul_precision=...)`` values: torch's float32 matmul precisions
MATMUL_PRECISIONS = ("highest", "high", "medium")


class PinnedStaging:
    """Two alternating sets of page-locked host buffers, one tensor per key.

    :meth:`stage` queues the copies of a batch of device tensors (any shapes, e.g. [B, C, k, k]
    fp16 per layer) into the next set and returns its views and an event; read the views only
    after ``event.synchronize()``. A set is reused two calls later, so the caller must have
    consumed a batch before staging the batch after next (the fill loop consumes each batch
    right after staging the following one).
    """

    def __init__(self) -> None:
        self._sets: tuple[dict, dict] = ({}, {})
        self._next = 0

    def stage(self, tensors: dict[Hashable, torch.Tensor]) -> tuple[dict[Hashable, torch.Tensor], torch.cuda.Event]:
        bufs = self._sets[self._next]
        self._next ^= 1
        views = {}
        for key, t in tensors.items():
            buf = bufs.get(key)
            if buf is None or buf.dtype != t.dtype or buf.shape[1:] != t.shape[1:] or buf.shape[0] < t.shape[0]:
                buf = bufs[key] = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            view = buf[: t.shape[0]]
            view.copy_(t, non_blocking=True)
            views[key] = view
        event = torch.cuda.Event()
        event.record()
        return views, event


@contextlib.contextmanager
def _restored(get: Callable[[], Any], put: Callable[[Any], None], value: Any) -> Iterator[None]:
    """``put(value)`` for the block, then ``put`` of what ``get()`` gave before it."""
    before = get()
    put(value)
    try:
        yield
    finally:
        put(before)


def matmul_precision(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.set_float32_matmul_precision(precision)`` for the block when ``device`` is a CUDA
    device (restored after it); on other devices nothing changes. "high" lets float32 products
    run on TF32 tensor cores (10-bit mantissa, as fp16 storage has), "highest" keeps full fp32."""
    if precision not in MATMUL_PRECISIONS:
        raise ValueError(f"matmul_precision must be one of {MATMUL_PRECISIONS}, got {precision!r}")
    if device.type != "cuda":
        return contextlib.nullcontext()
    return _restored(torch.get_float32_matmul_precision, torch.set_float32_matmul_precision, precision)


def torch_threads(n: int) -> contextlib.AbstractContextManager:
    """torch's intra-op threads set to ``n`` (>= 1) for the block, restored after it."""
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    return _restored(torch.get_num_threads, torch.set_num_threads, n)
