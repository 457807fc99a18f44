"""Small file helpers: atomic writes, checksums, temporary-name conventions.

Every output of :mod:`brainnet.data.prep.pipeline` is written through these helpers: the data goes to
``<name>.tmp-<pid>`` next to the target and is renamed into place with :func:`os.replace`, so a
reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brainnet.errors import DiskFullError

#: Marker in the names of temporary files (used to clean them up).
TMP_MARK = ".tmp-"


def tmp_path_for(path: str | os.PathLike) -> Path:
    """Temporary sibling of ``path`` (same directory, so the final rename is atomic).

    The suffix is kept (``x.npy`` -> ``x.tmp-123.npy``) so libraries that add extensions
    (``np.save``, ``np.savez``) write exactly this name.
    """
    path = Path(path)
    return path.with_name(f"{path.stem}{TMP_MARK}{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Context manager yielding a temporary path; on success it is renamed to ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def preallocate(fd: int, size: int, path: str | os.PathLike) -> None:
    """Give the open file ``fd`` (of ``path``) ``size`` bytes of real disk blocks (it grows; nothing shrinks).

    A sparse file (``truncate``) written through a memmap dies with SIGBUS when the disk fills under
    it; a preallocated one cannot run out of space. Lack of space (or a file-size limit) raises
    :class:`~brainnet.errors.DiskFullError` naming the file, and the file keeps its old size.
    Filesystems without fallocate fall back to glibc's emulation (writing zeros).
    """
    old = os.fstat(fd).st_size
    try:
        with space_errors(path, int(size) - old):
            os.posix_fallocate(fd, 0, int(size))
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, old)
        raise


#: ``sync_file_range`` flag: start writing the range's dirty pages, do not wait (Linux).
_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range():
    """libc's ``sync_file_range`` (Linux), or None where there is none."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Let the kernel start writing ``nbytes`` at ``offset`` of ``fd`` to disk now, without waiting, so a
    later ``fsync`` finds less to write (a no-op where ``sync_file_range`` does not exist). Durability
    still comes from ``fsync`` alone."""
    fn = _sync_file_range()
    if fn is not None and nbytes > 0:
        fn(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)


@contextlib.contextmanager
def space_errors(path: str | os.PathLike, nbytes: int | None = None) -> Iterator[None]:
    """Turn an :class:`OSError` for lack of space (ENOSPC, EDQUOT, EFBIG: a file-size limit) raised in
    the block into :class:`~brainnet.errors.DiskFullError` naming ``path`` and the ``nbytes`` asked for."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) and not isinstance(exc, DiskFullError):
            raise DiskFullError(path, exc.errno, exc.strerror, nbytes) from exc
        raise


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Atomically write one array as a ``.npy`` file; returns the final path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)
    return Path(path)


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Atomically write several arrays as an uncompressed ``.npz`` (deterministic bytes).

    ``np.savez`` stamps zip entries with the current time; this writer uses a fixed
    timestamp so the same arrays always give the same file (and the same checksum).
    """
    import zipfile

    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(arrays[key]), allow_pickle=False)
    return Path(path)


def save_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as pretty, key-sorted JSON (deterministic bytes)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return Path(path)


def save_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write a small text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks of ``chunk_bytes`` (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk_bytes)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def remove_tmp_files(folder: str | os.PathLike) -> int:
    """Delete the temporary files (``*.tmp-*``) left anywhere under ``folder``; returns the count."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    count = 0
    for path in folder.rglob(f"*{TMP_MARK}*"):
        if path.is_file():
            path.unlink()
            count += 1
    return count


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header says: ``shape``, ``dtype``, ``fortran_order``; ``offset`` = bytes
    before the data; ``data_bytes`` = the payload size the header implies."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def npy_header(path: str | os.PathLike) -> NpyHeader:
    """Read the header of a ``.npy`` file without reading its data.

    Raises:
        ValueError: the file does not start with a valid ``.npy`` header.
    """
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran_order, dtype = read(fh)
        return NpyHeader(tuple(int(s) for s in shape), np.dtype(dtype), bool(fortran_order), fh.tell())


class NpyRowWriter:
    """Fill a C-ordered ``.npy`` file block of rows by block, with plain positioned writes.

    Unlike a writable memmap, written pages do not stay mapped into the process, so the
    resident memory of a long fill stays at one block. Reopening an existing file of the same
    shape and dtype keeps its content (used to resume an interrupted fill); any other file at
    ``path`` is replaced by a new, zero-filled one whose blocks are allocated up front (see
    :func:`preallocate`: a full disk fails there with :class:`~brainnet.errors.DiskFullError`).

    Args:
        path: the ``.npy`` file.
        shape: full array shape; rows are the first axis.
        dtype: element type.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.offset = self._reopen() if self.path.is_file() else None
        if self.offset is None:
            self.offset = self._create()
        self._fd = os.open(self.path, os.O_RDWR)

    @property
    def resumed(self) -> bool:
        """True when an existing file of this shape and dtype was reopened."""
        return self._resumed

    def _reopen(self) -> int | None:
        try:
            header = npy_header(self.path)
        except ValueError:
            header = None
        size = self.path.stat().st_size
        ok = (header is not None and header.shape == self.shape and not header.fortran_order
              and header.dtype == self.dtype and size == header.offset + self.row_bytes * self.shape[0])
        self._resumed = bool(ok)
        return header.offset if ok else None

    def _create(self) -> int:
        with open(self.path, "wb") as fh:
            header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
            if len(repr(header)) < 65000:
                np.lib.format.write_array_header_1_0(fh, header)
            else:
                np.lib.format.write_array_header_2_0(fh, header)
            offset = fh.tell()
            fh.flush()
            preallocate(fh.fileno(), offset + self.row_bytes * self.shape[0], self.path)
        self._resumed = False
        return offset

    def write_rows(self, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` (shape [n, *shape[1:]]) at rows ``start .. start + n``."""
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or start < 0 or start + rows.shape[0] > self.shape[0]:
            raise ValueError(f"rows of shape {rows.shape} at {start} do not fit an array of shape {self.shape}")
        view = memoryview(rows).cast("B")
        first = pos = self.offset + start * self.row_bytes
        while view:
            written = os.pwrite(self._fd, view, pos)
            view, pos = view[written:], pos + written
        start_writeback(self._fd, first, pos - first)  # the disk works while the next rows are computed

    def flush(self) -> None:
        """Force the written rows to disk (call before recording a block as done)."""
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> NpyRowWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
