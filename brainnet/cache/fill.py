"""Filling the token cache: :class:`TokenCache` (a :class:`~brainnet.cache.store.TokenStore` that
computes the rows it lacks) and :func:`global_features`.

Images are decoded and resized in DataLoader workers while the backbone runs in batches under
``torch.inference_mode`` (on the CPU the workers also run the forward pass, one thread each).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from .staging import PinnedStaging, torch_threads
from .staging import matmul_precision as matmul_precision_ctx
from .store import TokenStore, check_image_id
from .transforms import load_resized, pool_map

#: torch threads of the process running a GPU fill while worker processes decode: its threads only
#: copy rows to the host, and more of them took cores from the workers (H200 machine, 16 cores,
#: 14 workers, ViT-B/16, 4,096 images: 16 threads 560-1,014 images/s in four runs, 2 threads 1,274,
#: 4 threads 1,473-2,018 in three runs, 8 threads 1,696)
GPU_FILL_THREADS = 8


class _ResizedImages(torch.utils.data.Dataset):
    """Items ``positions[k]`` of ``images`` decoded and resized (runs inside DataLoader workers)."""

    def __init__(self, images: Sequence, positions: Sequence[int], size: int):
        self.images, self.positions, self.size = images, list(positions), int(size)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        return load_resized(self.images[self.positions[k]], self.size), k


class _TokenBatches(torch.utils.data.Dataset):
    """Chunk ``j`` = images ``positions[j*b:(j+1)*b]`` decoded, resized AND run through the backbone.

    Used when the forward pass itself runs in the DataLoader workers (CPU fills): each worker
    process computes whole batches with one thread, so the cores work in parallel without the
    synchronisation cost of intra-op threading, and decoding overlaps other workers' forwards.
    Returns (pooled local fp16 dict, global fp16 dict, chunk positions).
    """

    def __init__(self, images, positions, batch_size, backbone, layers, pool, store_local):
        self.images, self.positions, self.b = images, list(positions), int(batch_size)
        self.backbone, self.layers, self.pool, self.store_local = backbone, list(layers), pool, store_local

    def __len__(self) -> int:
        return (len(self.positions) + self.b - 1) // self.b

    def __getitem__(self, j: int):
        ks = list(range(j * self.b, min((j + 1) * self.b, len(self.positions))))
        x = torch.stack([load_resized(self.images[self.positions[k]], self.backbone.input_size) for k in ks])
        with torch.inference_mode():
            local, glob = self.backbone.get_tokens(x.float().div_(255.0), layers=self.layers)
            local = {n: pool_map(t, self.pool).to(torch.float16) for n, t in local.items()} if self.store_local else {}
            glob = {n: t.to(torch.float16) for n, t in glob.items()}
        return local, glob, torch.tensor(ks)


def _worker_init(_):
    torch.set_num_threads(1)  # one thread per worker process: parallel over processes, not threads


class TokenCache(TokenStore):
    """Cache of fp16 tokens of one backbone, by image id: :meth:`fill` computes missing rows,
    :meth:`get` / :meth:`arrays` / :meth:`rows` read them (see :class:`TokenStore`).

    Args:
        backbone: a :class:`brainnet.backbones.Backbone` (its fingerprint keys the cache).
        pool: local maps are adaptive-average-pooled to ``pool x pool`` (grids already that small
            or smaller are kept as they are); None keeps full grids.
        layers: subset of ``backbone.layer_names`` (names or tap indices); None = all.
        budget_bytes: most bytes the cache may hold in RAM (default: half the available RAM).
            Exceeding it raises :class:`CacheBudgetError` before allocating.
        storage: "ram" (torch tensors) or "memmap" (np.memmap files under ``cache_dir``; reopened
            and reused by a later TokenCache with the same key).
        cache_dir: directory for memmap storage.
        namespace: dataset name; ids are only unique within a dataset, so it is part of the key.
        store_local: False keeps only global vectors (memory-image features).
        device: where the backbone runs (default: where its parameters are).
    """

    def fill(
        self,
        images: Sequence,
        ids: Sequence[int | str] | None = None,
        batch_size: int = 32,
        num_workers: int = 2,
        progress: bool = True,
        forward: str = "auto",
        matmul_precision: str = "high",
    ) -> TokenCache:
        """Compute and store tokens for every id not cached yet.

        Args:
            images: uint8 array / memmap [N, S, S, 3], or any Sequence of images (arrays [H, W, 3],
                PIL images or file paths); decoded and resized to the backbone's input size in
                ``num_workers`` worker processes.
            ids: N dataset image ids (int or str, unique); default 0..N-1.
            batch_size: images per forward pass.
            num_workers: DataLoader worker processes (0 = decode in this process). A GPU fill with
                workers runs with at most max(:data:`GPU_FILL_THREADS`, cores - num_workers) torch
                threads in this process (restored after it).
            progress: show a tqdm bar.
            forward: where the backbone runs. "main": this process, batches decoded by the
                workers; "workers": each worker decodes AND runs whole batches with one thread
                (CPU only; faster on few cores than intra-op threads); "auto": "workers" when the
                backbone is on the CPU and num_workers >= 2, else "main".
            matmul_precision: float32 matrix products of a CUDA forward (torch's
                ``set_float32_matmul_precision``, for this fill only): "high" (default) runs them on
                TF32 tensor cores (10-bit mantissa, as the fp16 rows have; ViT-B/16 on an H200:
                3.7x the "highest" forward rate), "highest" in full fp32. CPU fills ignore it.
        """
        n = len(images)
        ids = list(range(n)) if ids is None else [check_image_id(i) for i in ids]
        if len(ids) != n:
            raise ValueError(f"got {n} images but {len(ids)} ids")
        if len(set(ids)) != n:
            raise ValueError("ids must be unique")
        precision = matmul_precision_ctx(self.device, matmul_precision)  # checks the value before any work
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        with self._writing():  # memmap: one filling process at a time, rows of an earlier one reused
            return self._fill(images, ids, batch_size, num_workers, progress, forward, precision)

    def _fill(self, images, ids, batch_size, num_workers, progress, forward, precision) -> TokenCache:
        n = len(images)
        todo = [k for k, i in enumerate(ids) if i not in self._index]
        self.stats["hits"] += n - len(todo)
        self.stats["misses"] += len(todo)
        if not todo:
            return self
        if forward not in ("auto", "main", "workers"):
            raise ValueError(f"forward must be 'auto', 'main' or 'workers', got {forward!r}")
        if forward == "auto":
            forward = "workers" if self.device.type == "cpu" and num_workers >= 2 else "main"
        if forward == "workers" and (self.device.type != "cpu" or num_workers < 1):
            raise ValueError("forward='workers' needs a CPU backbone and num_workers >= 1")
        start = len(self._ids)
        self._grow(start + len(todo))
        if forward == "workers":
            # at least two chunks per worker so that no worker idles at the end
            chunk = max(1, min(batch_size, -(-len(todo) // (2 * num_workers))))
            data = _TokenBatches(images, todo, chunk, self.backbone, self.layers, self.pool, self.store_local)
            loader = torch.utils.data.DataLoader(data, batch_size=None, shuffle=False, num_workers=num_workers,
                                                 worker_init_fn=_worker_init, persistent_workers=False)
        else:
            loader = torch.utils.data.DataLoader(
                _ResizedImages(images, todo, self.backbone.input_size), batch_size=batch_size, shuffle=False,
                num_workers=num_workers, worker_init_fn=_worker_init if num_workers else None,
                pin_memory=self.device.type == "cuda", persistent_workers=False,
            )
        t0 = time.perf_counter()
        was_training = self.backbone.training
        self.backbone.eval()
        # on a GPU each batch goes through pinned buffers and is written one batch later (staging.py)
        staging = PinnedStaging() if forward == "main" and self.device.type == "cuda" else None
        pending = None  # (rows, staged tensors, event, batch positions) not written yet
        row = start

        def commit(rows: slice, tensors: dict, event, ks: torch.Tensor) -> None:
            if event is not None:
                event.synchronize()
            self._store_rows(rows, tensors)
            for r, k in enumerate(ks.tolist(), start=rows.start):  # ids enter the index once their rows are written
                self._index[ids[todo[k]]] = r
                self._ids.append(ids[todo[k]])

        try:
            with torch.inference_mode(), precision, self._threads(forward, num_workers):
                bar = tqdm(total=len(todo), desc="caching tokens", unit="img", disable=not progress)
                for item in loader:
                    if forward == "workers":
                        local, glob, ks = item
                    else:
                        batch, ks = item
                        x = batch.to(self.device, non_blocking=True).float().div_(255.0)
                        local, glob = self.backbone.get_tokens(x, layers=self.layers)
                    rows = slice(row, row + len(ks))
                    row += len(ks)
                    tensors = self._row_tensors(local, glob)
                    if staging is None:
                        commit(rows, tensors, None, ks)
                    else:
                        staged, event = staging.stage(tensors)
                        if pending is not None:
                            commit(*pending)  # the previous batch, while the GPU runs this one
                        pending = (rows, staged, event, ks)
                    bar.update(len(ks))
                if pending is not None:
                    commit(*pending)
                bar.close()
        finally:
            self.backbone.train(was_training)
            if self.storage == "memmap":
                for arr in (*self._local.values(), *self._global.values()):
                    arr.flush()
                self._write_header()
        self.stats["computed"] += len(todo)
        self.stats["fill_seconds"] += time.perf_counter() - t0
        return self

    def _threads(self, forward: str, num_workers: int):
        """A GPU fill decoding in worker processes runs with at most
        ``max(GPU_FILL_THREADS, cores - num_workers)`` torch threads here (they only copy rows to
        the host); otherwise the threads are left as they are."""
        if forward != "main" or self.device.type != "cuda" or not num_workers:
            return contextlib.nullcontext()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return torch_threads(min(torch.get_num_threads(), max(GPU_FILL_THREADS, cores - num_workers)))


def global_features(
    backbone,
    images: Sequence,
    layer: str | int | None = None,
    batch_size: int = 32,
    num_workers: int = 2,
    progress: bool = True,
) -> torch.Tensor:
    """One vector per image (memory-image features), e.g. for every image a subject saw.

    Args:
        backbone: any Backbone.
        images: as in :meth:`TokenCache.fill`.
        layer: which layer's global token (name or index; default the last layer).

    Returns:
        fp16 tensor [N, C] in the order of ``images``.
    """
    name = backbone.layer_names[-1] if layer is None else backbone.layer_names[backbone.select([layer])[0]]
    cache = TokenCache(backbone, pool=None, layers=[name], store_local=False)
    cache.fill(images, batch_size=batch_size, num_workers=num_workers, progress=progress)
    return cache.get(range(len(images)))[1][name]
