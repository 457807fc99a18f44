"""Storage of the token cache: the cache key (:class:`CacheSpec`), fp16 row arrays in RAM or in
``np.memmap`` files (one per layer, grown under a RAM / disk budget), lookup by image id.

:class:`TokenStore` is the storage half of :class:`brainnet.cache.TokenCache` (which adds
``fill``, the computing half, in :mod:`brainnet.cache.fill`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainnet.data.io import preallocate
from brainnet.errors import BrainnetError
from brainnet.locks import writer_lock

from .transforms import RESIZE_METHOD, pool_map

CACHE_FORMAT_VERSION = 1


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


def check_image_id(i: Any) -> Hashable:
    """An image id as stored: int (numpy ints converted) or str; TypeError otherwise."""
    if isinstance(i, (np.integer,)):
        return int(i)
    if isinstance(i, bool) or not isinstance(i, (int, str)):
        raise TypeError(f"image ids must be int or str, got {i!r} ({type(i).__name__})")
    return i


class TokenStore:
    """fp16 token rows of one backbone, by image id: key, layout, budget, storage and lookup.

    Arguments as :class:`brainnet.cache.TokenCache` (the subclass that fills rows). Per layer the
    rows are a (capacity, C, k, k) local and a (capacity, C) global fp16 array: torch tensors
    (``storage="ram"``) or ``np.memmap`` files ``<cache_dir>/tokens-<key>/{local,global}_<layer>.f16``
    with a ``header.json`` (spec, the backbone's ``weights_id``, ids in row order, shapes).
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
        self.weights_id = backbone.weights_id  # the weights' name (they enter the key by content, via the fingerprint)
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
        return {"spec": asdict(self.spec), "key": self.key, "weights": self.weights_id,
                "count": len(self._ids), "capacity": self._capacity,
                "ids": self._ids, "local_shapes": self.local_shapes, "global_shapes": self.global_shapes}

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Context of one fill: with memmap storage, hold ``<cache_dir>/tokens-<key>.lock`` (another
        process filling the same cache is waited for) and re-read the header, so its rows are reused."""
        if self.storage != "memmap":
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with writer_lock(self.path.with_name(self.path.name + ".lock"), "token cache fill"):
            if (self.path / "header.json").exists():
                self._open_existing()
            yield

    def _write_header(self) -> None:
        tmp = self.path / "header.json.tmp"
        tmp.write_text(json.dumps(self._header()))
        os.replace(tmp, self.path / "header.json")

    def _open_existing(self) -> None:
        self._local.clear()
        self._global.clear()
        head = json.loads((self.path / "header.json").read_text())
        if head.get("spec") != json.loads(json.dumps(asdict(self.spec))):
            raise BrainnetError(f"{self.path} holds a cache made with other settings (stale); "
                                "delete it or use another cache_dir")
        self._capacity = int(head["capacity"])
        self._ids = [i for i in head["ids"]]
        self._index = {i: r for r, i in enumerate(self._ids)}
        self._map_files(mode="r+")

    def _map_files(self, mode: str) -> None:
        kinds = (("local", self.local_shapes, self._local), ("global", self.global_shapes, self._global))
        for kind, shapes, target in kinds:
            for name, shape in shapes.items():
                target[name] = np.memmap(self._file(kind, name), dtype=np.float16, mode=mode,
                                         shape=(self._capacity, *shape))

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
                raise CacheBudgetError(f"memmap cache needs {extra / 2**30:.2f} GiB more disk in {self.path}, "
                                       f"{free / 2**30:.2f} GiB free")

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
        kinds = (("local", self.local_shapes, self._local), ("global", self.global_shapes, self._global))
        grown = []
        try:
            for kind, shapes, target in kinds:
                for name, shape in shapes.items():
                    target.pop(name, None)  # drop the old map before resizing its file
                    file, row = self._file(kind, name), int(np.prod(shape)) * 2
                    grown.append((file, self._capacity * row))
                    with open(file, "ab") as f:  # real blocks: a full disk fails here, not with SIGBUS later
                        preallocate(f.fileno(), capacity * row, file)
        except OSError:
            for file, size in grown:  # back to the sizes the header describes (no files when there is none)
                if size or (self.path / "header.json").exists():
                    os.truncate(file, size)
                else:
                    file.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.path.rmdir()
            if self._capacity:
                self._map_files(mode="r+")
            raise
        self._capacity = capacity
        self._map_files(mode="r+")
        self._write_header()

    def _row_tensors(self, local: dict, glob: dict) -> dict[tuple[str, str], torch.Tensor]:
        """What a batch stores, as fp16 on the batch's device: {("local", layer): [B, C, k, k] pooled,
        ("global", layer): [B, C]}."""
        out = {("local", n): pool_map(local[n], self.pool).to(torch.float16) for n in self.local_shapes}
        out.update({("global", n): glob[n].to(torch.float16) for n in self.global_shapes})
        return out

    def _store_rows(self, rows: slice, tensors: dict[tuple[str, str], torch.Tensor]) -> None:
        """Write :meth:`_row_tensors` output into ``rows`` of the arrays."""
        for (kind, name), t in tensors.items():
            self._put((self._local if kind == "local" else self._global)[name], rows, t)

    def _write_rows(self, rows: slice, local: dict, glob: dict) -> None:
        self._store_rows(rows, self._row_tensors(local, glob))

    def _put(self, dest, rows: slice, t: torch.Tensor) -> None:
        t = t.to(dtype=torch.float16)
        if isinstance(dest, torch.Tensor):
            dest[rows].copy_(t, non_blocking=False)
        else:
            dest[rows] = t.cpu().numpy()

    def rows(self, ids: Sequence[int | str]) -> np.ndarray:
        """Row numbers of ``ids`` (KeyError naming the missing ones)."""
        ids = [check_image_id(i) for i in ids]
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
        return (
            {n: self._take(a, r) for n, a in self._local.items()},
            {n: self._take(a, r) for n, a in self._global.items()},
        )

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
        return (f"{type(self).__name__}(key={self.key}, layers={self.layers}, pool={self.pool}, n={len(self)}, "
                f"storage={self.storage}, {self.nbytes / 2**20:.1f} MiB)")

