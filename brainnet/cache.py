"""fp16 token cache: backbone tokens computed once, in batches, stored compactly.

What the reference (Brain Decodes Deep Nets) did and what this does instead:

* reference: one image at a time (batch size 1), fp32 tensors in a Python dict keyed by the float
  sum of the image tensor (collisions possible), no check of which backbone made them;
* here: a DataLoader decodes and resizes images in worker processes while the backbone runs under
  ``torch.inference_mode`` in batches, stopping after the last cached layer (on the CPU the
  workers also run the forward pass, one thread each: ``fill(forward=...)``);
  local maps are pooled to ``pool x pool`` on the fly and written as fp16 into preallocated
  contiguous arrays (one per layer) in RAM or in disk-backed ``np.memmap`` files; rows are found by
  dataset image id, and the whole cache is keyed by backbone fingerprint + layers + pooling +
  input transform, so a stale cache is never reused (the key is in the directory name and header).

The RAM budget is checked before anything large is allocated.

>>> cache = TokenCache(create_backbone("brainnet-tiny"), pool=8)
>>> cache.fill(images_uint8, ids=range(len(images_uint8)))      # images: [N, S, S, 3] uint8
>>> local, glob = cache.get([0, 5, 7])   # local["3"]: [3, 192, 4, 4] fp16 (grids < pool are kept)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Hashable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from brainnet.errors import BrainnetError

CACHE_FORMAT_VERSION = 1
RESIZE_METHOD = "PIL.BILINEAR"  # PIL's bilinear resize filters over the source footprint (antialiased)


class CacheBudgetError(BrainnetError, MemoryError):
    """The cache would need more memory than its budget allows (raised before allocating)."""


@dataclass(frozen=True)
class CacheSpec:
    """Everything that decides what a cached row contains; its hash is the cache key."""

    fingerprint: str
    layers: tuple[str, ...]
    pool: int | None
    input_size: int
    resize: str
    store_local: bool
    dtype: str
    namespace: str
    version: int = CACHE_FORMAT_VERSION

    @property
    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:24]


def available_ram_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else total physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


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


def pool_map(t: torch.Tensor, pool: int | None) -> torch.Tensor:
    """Adaptive average pool [B, C, H, W] to at most pool x pool (smaller grids kept)."""
    if pool is None or (t.shape[-1] <= pool and t.shape[-2] <= pool):
        return t
    return F.adaptive_avg_pool2d(t, (min(t.shape[-2], pool), min(t.shape[-1], pool)))


def _worker_init(_):
    torch.set_num_threads(1)  # one thread per worker process: parallel over processes, not threads


def _check_id(i: Any) -> Hashable:
    if isinstance(i, (np.integer,)):
        return int(i)
    if isinstance(i, bool) or not isinstance(i, (int, str)):
        raise TypeError(f"image ids must be int or str, got {i!r} ({type(i).__name__})")
    return i


class TokenCache:
    """Cache of fp16 tokens of one backbone, by image id.

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

    def __init__(
        self,
        backbone,
        pool: int | None = 8,
        layers: Sequence[str | int] | None = None,
        budget_bytes: int | None = None,
        storage: str = "ram",
        cache_dir: str | os.PathLike | None = None,
        namespace: str = "",
        store_local: bool = True,
        device: str | torch.device | None = None,
    ):
        if storage not in ("ram", "memmap"):
            raise ValueError(f"storage must be 'ram' or 'memmap', got {storage!r}")
        if storage == "memmap" and cache_dir is None:
            raise ValueError("storage='memmap' needs cache_dir=<directory for the memmap files>")
        if pool is not None and (isinstance(pool, bool) or not isinstance(pool, int) or pool < 1):
            raise ValueError(f"pool must be a positive int or None, got {pool!r}")
        self.backbone = backbone
        pos = backbone.select(layers)
        self.layers = [backbone.layer_names[p] for p in pos]
        self.pool = pool
        self.storage = storage
        self.store_local = bool(store_local)
        self.budget_bytes = int(budget_bytes) if budget_bytes is not None else available_ram_bytes() // 2
        self.device = torch.device(device) if device is not None else next(
            (p.device for p in backbone.parameters()), torch.device("cpu"))
        self.spec = CacheSpec(
            fingerprint=backbone.fingerprint, layers=tuple(self.layers), pool=pool, input_size=backbone.input_size,
            resize=RESIZE_METHOD, store_local=self.store_local, dtype="float16", namespace=str(namespace),
        )
        self.key = self.spec.key
        self.local_shapes: dict[str, tuple[int, int, int]] = {}
        self.global_shapes: dict[str, tuple[int]] = {}
        for p in pos:
            name, c, (h, w) = backbone.layer_names[p], backbone.widths[p], backbone.grid_sizes[p]
            if pool is not None:
                h, w = min(h, pool), min(w, pool)
            if self.store_local:
                self.local_shapes[name] = (c, h, w)
            self.global_shapes[name] = (c,)
        self._index: dict[Hashable, int] = {}
        self._ids: list[Hashable] = []
        self._capacity = 0
        self._local: dict[str, Any] = {}
        self._global: dict[str, Any] = {}
        self.stats = {"hits": 0, "misses": 0, "computed": 0, "fill_seconds": 0.0}
        self.path = Path(cache_dir) / f"tokens-{self.key}" if storage == "memmap" else None
        if self.path is not None and (self.path / "header.json").exists():
            self._open_existing()

    # ------------------------------------------------------------------ sizes
    @property
    def bytes_per_image(self) -> int:
        """fp16 bytes one cached image takes (all layers, local + global)."""
        n = sum(int(np.prod(s)) for s in self.local_shapes.values()) + sum(s[0] for s in self.global_shapes.values())
        return 2 * n

    @property
    def nbytes(self) -> int:
        """Bytes of the token arrays as allocated (capacity x bytes_per_image)."""
        return self._capacity * self.bytes_per_image

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, image_id) -> bool:
        return image_id in self._index

    @property
    def ids(self) -> list[Hashable]:
        """Cached ids in row order."""
        return list(self._ids)

    # ------------------------------------------------------------------ storage
    def _file(self, kind: str, name: str) -> Path:
        return self.path / f"{kind}_{name}.f16"

    def _header(self) -> dict:
        return {"spec": asdict(self.spec), "key": self.key, "count": len(self._ids), "capacity": self._capacity,
                "ids": self._ids, "local_shapes": self.local_shapes, "global_shapes": self.global_shapes}

    def _write_header(self) -> None:
        tmp = self.path / "header.json.tmp"
        tmp.write_text(json.dumps(self._header()))
        os.replace(tmp, self.path / "header.json")

    def _open_existing(self) -> None:
        head = json.loads((self.path / "header.json").read_text())
        if head.get("spec") != json.loads(json.dumps(asdict(self.spec))):
            raise BrainnetError(f"{self.path} holds a cache made with other settings (stale); delete it or use another cache_dir")
        self._capacity = int(head["capacity"])
        self._ids = [i for i in head["ids"]]
        self._index = {i: r for r, i in enumerate(self._ids)}
        self._map_files(mode="r+")

    def _map_files(self, mode: str) -> None:
        for kind, shapes, target in (("local", self.local_shapes, self._local), ("global", self.global_shapes, self._global)):
            for name, shape in shapes.items():
                target[name] = np.memmap(self._file(kind, name), dtype=np.float16, mode=mode, shape=(self._capacity, *shape))

    def _check_budget(self, capacity: int) -> None:
        need = capacity * self.bytes_per_image
        if self.storage == "ram":
            # growing copies the old rows into new arrays: both exist for a moment
            peak = need + self.nbytes
            if peak > self.budget_bytes:
                raise CacheBudgetError(
                    f"caching {capacity} images needs {need / 2**30:.2f} GiB ({self.bytes_per_image} B per image"
                    f"{' plus the old arrays while growing' if self.nbytes else ''}) but budget_bytes is "
                    f"{self.budget_bytes / 2**30:.2f} GiB. Use a smaller pool, fewer layers, store_local=False, "
                    "a larger budget_bytes, or storage='memmap' with cache_dir= (disk-backed)."
                )
        else:
            free = shutil.disk_usage(self.path.parent if not self.path.exists() else self.path).free
            extra = need - self.nbytes
            if extra > free:
                raise CacheBudgetError(f"memmap cache needs {extra / 2**30:.2f} GiB more disk in {self.path}, {free / 2**30:.2f} GiB free")

    def _grow(self, capacity: int) -> None:
        """Make room for ``capacity`` rows (budget checked first; existing rows kept)."""
        if capacity <= self._capacity:
            return
        self._check_budget(capacity)
        if self.storage == "ram":
            for shapes, target in ((self.local_shapes, self._local), (self.global_shapes, self._global)):
                for name, shape in shapes.items():
                    new = torch.empty((capacity, *shape), dtype=torch.float16)
                    if name in target and self._capacity:
                        new[: self._capacity] = target[name]
                    target[name] = new
            self._capacity = capacity
            return
        self.path.mkdir(parents=True, exist_ok=True)
        for kind, shapes, target in (("local", self.local_shapes, self._local), ("global", self.global_shapes, self._global)):
            for name, shape in shapes.items():
                target.pop(name, None)  # drop the old map before resizing its file
                with open(self._file(kind, name), "ab") as f:
                    f.truncate(capacity * int(np.prod(shape)) * 2)
        self._capacity = capacity
        self._map_files(mode="r+")
        self._write_header()

    def _write_rows(self, rows: slice, local: dict, glob: dict) -> None:
        for name in self.local_shapes:
            self._put(self._local[name], rows, pool_map(local[name], self.pool))
        for name in self.global_shapes:
            self._put(self._global[name], rows, glob[name])

    def _put(self, dest, rows: slice, t: torch.Tensor) -> None:
        t = t.to(dtype=torch.float16)
        if isinstance(dest, torch.Tensor):
            dest[rows].copy_(t, non_blocking=False)
        else:
            dest[rows] = t.cpu().numpy()

    # ------------------------------------------------------------------ fill / get
    def fill(
        self,
        images: Sequence,
        ids: Sequence[int | str] | None = None,
        batch_size: int = 32,
        num_workers: int = 2,
        progress: bool = True,
        forward: str = "auto",
    ) -> "TokenCache":
        """Compute and store tokens for every id not cached yet.

        Args:
            images: uint8 array / memmap [N, S, S, 3], or any Sequence of images (arrays [H, W, 3],
                PIL images or file paths); decoded and resized to the backbone's input size in
                ``num_workers`` worker processes.
            ids: N dataset image ids (int or str, unique); default 0..N-1.
            batch_size: images per forward pass.
            num_workers: DataLoader worker processes (0 = decode in this process).
            progress: show a tqdm bar.
            forward: where the backbone runs. "main": this process, batches decoded by the
                workers; "workers": each worker decodes AND runs whole batches with one thread
                (CPU only; faster on few cores than intra-op threads); "auto": "workers" when the
                backbone is on the CPU and num_workers >= 2, else "main".
        """
        n = len(images)
        ids = list(range(n)) if ids is None else [_check_id(i) for i in ids]
        if len(ids) != n:
            raise ValueError(f"got {n} images but {len(ids)} ids")
        if len(set(ids)) != n:
            raise ValueError("ids must be unique")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
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
        row = start
        try:
            with torch.inference_mode():
                bar = tqdm(total=len(todo), desc="caching tokens", unit="img", disable=not progress)
                for item in loader:
                    if forward == "workers":
                        local, glob, ks = item
                    else:
                        batch, ks = item
                        x = batch.to(self.device, non_blocking=True).float().div_(255.0)
                        local, glob = self.backbone.get_tokens(x, layers=self.layers)
                    rows = slice(row, row + len(ks))
                    self._write_rows(rows, local, glob)
                    for k in ks.tolist():
                        self._index[ids[todo[k]]] = row
                        self._ids.append(ids[todo[k]])
                        row += 1
                    bar.update(len(ks))
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

    def rows(self, ids: Sequence[int | str]) -> np.ndarray:
        """Row numbers of ``ids`` (KeyError naming the missing ones)."""
        ids = [_check_id(i) for i in ids]
        missing = [i for i in ids if i not in self._index]
        self.stats["hits"] += len(ids) - len(missing)
        self.stats["misses"] += len(missing)
        if missing:
            raise KeyError(f"{len(missing)} ids not cached (e.g. {missing[:5]}); call fill() with their images first")
        return np.fromiter((self._index[i] for i in ids), dtype=np.int64, count=len(ids))

    def get(self, ids: Sequence[int | str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Cached tokens of ``ids`` (in that order).

        Returns:
            local: dict layer -> fp16 [b, C, k, k] (empty when store_local=False),
            global: dict layer -> fp16 [b, C].
        """
        r = self.rows(ids)
        return ({n: self._take(a, r) for n, a in self._local.items()}, {n: self._take(a, r) for n, a in self._global.items()})

    def arrays(self, ids: Sequence[int | str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Tokens of ``ids`` as numpy arrays, without copying when their rows are one ascending run.

        With ``storage="memmap"`` such a request returns read-only ``np.memmap`` views, so a
        dataset larger than RAM stays on disk and rows are read as batches ask for them; otherwise
        the rows are gathered (a copy), as :meth:`get` does.

        Returns:
            local: dict layer -> fp16 (b, C, k, k), global: dict layer -> fp16 (b, C).
        """
        r = self.rows(ids)
        run = r.size > 0 and bool(np.all(np.diff(r) == 1))
        sl = slice(int(r[0]), int(r[-1]) + 1) if run else None

        def view(arr):
            if isinstance(arr, torch.Tensor):
                return arr[sl].numpy() if run else arr.index_select(0, torch.from_numpy(r)).numpy()
            if not run:
                return np.ascontiguousarray(arr[r])
            out = arr[sl]
            if self.storage == "memmap":
                out = np.memmap(arr.filename, dtype=arr.dtype, mode="r", shape=out.shape,
                                offset=int(sl.start) * int(np.prod(arr.shape[1:])) * arr.dtype.itemsize)
            return out

        return ({n: view(a) for n, a in self._local.items()}, {n: view(a) for n, a in self._global.items()})

    @staticmethod
    def _take(arr, rows: np.ndarray) -> torch.Tensor:
        if isinstance(arr, torch.Tensor):
            return arr.index_select(0, torch.from_numpy(rows))
        return torch.from_numpy(np.ascontiguousarray(arr[rows]))

    def __repr__(self) -> str:
        return (f"TokenCache(key={self.key}, layers={self.layers}, pool={self.pool}, n={len(self)}, "
                f"storage={self.storage}, {self.nbytes / 2**20:.1f} MiB)")


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
