"""GPU -> host copies of token batches that stall neither the GPU nor the thread launching it, and
the float32 matrix-product precision of a GPU fill.

Measured on an H200 (ViT-B/16, batches of 64, 12 layers pooled to 8x8, fp16, 1.2 MB a row):
writing each batch straight into the (pageable) cache arrays took 40% of the GPU's time in
``Memcpy DtoH (Device -> Pageable)`` at ~2 GB/s, and the next forward waited for it.
:class:`PinnedStaging` copies a batch into one of two page-locked buffer sets with ``non_blocking``
copies and an event. After that fix the fill ran at 1,014-1,077 images/s while its DataLoader
alone delivered ~2,190 and the forward ~4,000: the thread launching the forwards also copied every
staged batch (77 MB) into the store. :class:`StagedWriter` moves that copy to one writer thread
(torch and numpy copies release the GIL), so launching, computing and writing overlap.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

log = logging.getLogger(__name__)

#: ``TokenCache.fill(matmul_precision=...)`` values: torch's float32 matmul precisions
MATMUL_PRECISIONS = ("highest", "high", "medium")


class PinnedStaging:
    """``n_sets`` alternating sets of host buffers (page-locked when the tensors are on a GPU), one
    tensor per key.

    :meth:`stage` queues the copies of a batch of device tensors (any shapes, e.g. [B, C, k, k]
    fp16 per layer) into the next set and returns its views and an event (None for CPU tensors:
    their copy is done on return); read the views only after ``event.synchronize()``. A set is
    reused ``n_sets`` calls later, so a batch must be consumed before then.
    """

    def __init__(self, n_sets: int = 2) -> None:
        if n_sets < 1:
            raise ValueError(f"n_sets must be >= 1, got {n_sets}")
        self._sets: tuple[dict, ...] = tuple({} for _ in range(n_sets))
        self._next = 0

    def stage(self, tensors: dict[Hashable, torch.Tensor]) -> tuple[dict[Hashable, torch.Tensor], Any]:
        bufs = self._sets[self._next]
        self._next = (self._next + 1) % len(self._sets)
        views, cuda = {}, False
        for key, t in tensors.items():
            cuda = cuda or t.is_cuda
            buf = bufs.get(key)
            if buf is None or buf.dtype != t.dtype or buf.shape[1:] != t.shape[1:] or buf.shape[0] < t.shape[0]:
                buf = bufs[key] = torch.empty(t.shape, dtype=t.dtype, pin_memory=t.is_cuda)
            view = buf[: t.shape[0]]
            view.copy_(t, non_blocking=t.is_cuda)
            views[key] = view
        if not cuda:
            return views, None
        event = torch.cuda.Event()
        event.record()
        return views, event


class StagedWriter:
    """Stage batches (:class:`PinnedStaging`) and hand each to ``write(meta, views)`` in one writer
    thread, in the order they were put, once its copy has arrived.

    At most ``depth`` batches are staged and not yet written: :meth:`put` waits for the batch
    ``depth`` puts back before it reuses that batch's buffers (``depth`` buffer sets). An error
    raised by ``write`` comes back from the next :meth:`put` or from :meth:`close`; batches put
    after it are not written. Use as a context manager, or call :meth:`close` (which waits for every
    write); leaving the ``with`` block on an error waits for the writes under way and does not raise
    theirs over it.
    """

    def __init__(self, write: Callable[[Any, dict[Hashable, torch.Tensor]], None], depth: int = 2) -> None:
        self._write, self._depth = write, int(depth)
        self._staging = PinnedStaging(n_sets=self._depth)
        self._pending: collections.deque[Future] = collections.deque()
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix="brainnet-cache-writer")
        self._failed = False

    def put(self, tensors: dict[Hashable, torch.Tensor], meta: Any) -> None:
        """Stage ``tensors`` (device tensors of one batch) and queue ``write(meta, host views)``."""
        if self._pool is None:
            raise RuntimeError("StagedWriter is closed")
        while len(self._pending) >= self._depth:  # the set about to be reused must be written first
            self._pending.popleft().result()
        views, event = self._staging.stage(tensors)
        self._pending.append(self._pool.submit(self._commit, event, views, meta))

    def _commit(self, event, views: dict, meta: Any) -> None:
        if self._failed:
            return
        try:
            if event is not None:
                event.synchronize()
            with torch.inference_mode():
                self._write(meta, views)
        except BaseException:
            self._failed = True
            raise

    def close(self, raise_errors: bool = True) -> None:
        """Wait for every queued write; re-raise the first error unless ``raise_errors`` is False."""
        if self._pool is None:
            return
        first = None
        try:
            while self._pending:
                try:
                    self._pending.popleft().result()
                except BaseException as err:  # noqa: BLE001 - kept and re-raised below
                    first = first or err
        finally:
            self._pool.shutdown(wait=True)
            self._pool = None
        if first is not None:
            if raise_errors:
                raise first
            log.warning("a staged write failed while another error was raised: %s", first)

    def __enter__(self) -> StagedWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(raise_errors=exc_type is None)


@contextlib.contextmanager
def matmul_precision(device: torch.device, precision: str) -> Iterator[None]:
    """``torch.set_float32_matmul_precision(precision)`` for the block when ``device`` is a CUDA
    device (restored after it); on other devices nothing changes. "high" lets float32 products
    run on TF32 tensor cores (10-bit mantissa, as fp16 storage has), "highest" keeps full fp32."""
    if precision not in MATMUL_PRECISIONS:
        raise ValueError(f"matmul_precision must be one of {MATMUL_PRECISIONS}, got {precision!r}")
    if device.type != "cuda":
        yield
        return
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)
