"""Read a byte range of a big file block by block, past the page cache when the file is not cached.

Prepare reads each source file once: ~10 GB of betas for an algonauts-scale nsd-mini subject, ~39 GB
for an NSD subject on fsaverage (40 sessions, 2 x 163,842 vertices x 750 trials, float32). Read through
the page cache, every page costs the kernel an insertion, a copy into the reader's buffer and, once
memory is full, a reclaim: on this project's 2-core test machine, 3.4-7 s of CPU for 9.8 GB read cold
(varying from run to run), as much as the prepare stage's own picking of those bytes. With
``O_DIRECT`` the disk writes into an aligned buffer of ours: 0.3 s, and the read was no slower
(``benchmarks/bench_prepare.py`` prints both reads).

:func:`read_blocks` therefore reads a range with ``O_DIRECT``, in large aligned reads queued ahead of
the consumer on a thread, when the platform and the file system allow it and the range is not in the
page cache already (a ``RWF_NOWAIT`` probe at its start, middle and end; a file just written, or read
a moment ago, is still read from memory). Otherwise, and wherever a direct read is refused, it reads
through the cache into one reused buffer. Both give the same bytes.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Alignment of a direct read's file offset, length and buffer (a page: covers 512-byte and 4 KiB devices).
DIRECT_ALIGN = 4096
#: Bytes asked of the disk per direct read (rounded down to whole blocks of the caller).
DIRECT_READ_BYTES = 4 << 20
#: Direct reads queued ahead of the one the caller works on.
DIRECT_AHEAD = 2


def _aligned_buffer(nbytes: int) -> np.ndarray:
    """uint8 [nbytes] starting on a page boundary (anonymous memory map)."""
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=np.uint8)


def range_cached(fd: int, offset: int, length: int) -> bool | None:
    """Whether the pages at the start, middle and end of bytes ``[offset, offset + length)`` of the open
    file ``fd`` are in the page cache (one-byte ``RWF_NOWAIT`` reads); None where this cannot be told."""
    preadv, nowait = getattr(os, "preadv", None), getattr(os, "RWF_NOWAIT", None)
    if preadv is None or nowait is None or length <= 0:
        return None
    probe = bytearray(1)
    for pos in (offset, offset + length // 2, offset + length - 1):
        try:
            preadv(fd, [probe], pos, nowait)
        except BlockingIOError:
            return False
        except OSError:  # not supported by this kernel or file system
            return None
    return True


def _open_direct(path: Path) -> int | None:
    """A file descriptor of ``path`` opened ``O_DIRECT``; None where the platform or file system refuses."""
    flag = getattr(os, "O_DIRECT", None)
    if flag is None:
        return None
    try:
        return os.open(path, os.O_RDONLY | flag)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return None
        raise


def _short(path: Path, offset: int, length: int) -> EOFError:
    return EOFError(f"{path}: the file ends before byte {offset + length} (reading {length} bytes from {offset})")


def _buffered_blocks(fd: int, path: Path, offset: int, length: int, block_bytes: int) -> Iterator[np.ndarray]:
    buf = np.empty(min(block_bytes, length), dtype=np.uint8)
    with open(fd, "rb", buffering=0, closefd=False) as fh:  # readinto: on every platform
        fh.seek(offset)
        for a in range(0, length, block_bytes):
            view = memoryview(buf)[: min(block_bytes, length - a)]
            got = 0
            while got < len(view) and (n := fh.readinto(view[got:])):
                got += n
            if got < len(view):
                raise _short(path, offset, length)
            yield buf[: len(view)]


def _direct_blocks(fd: int, path: Path, offset: int, length: int, block_bytes: int) -> Iterator[np.ndarray]:
    """Blocks read ``O_DIRECT``: each read covers whole blocks (about ``DIRECT_READ_BYTES``), widened to
    aligned ends; a thread runs the next ``DIRECT_AHEAD`` reads while the caller works on this one's
    blocks (so a caller held up for a moment does not leave the disk idle). The first read is done
    before this returns, so a refused direct read (EINVAL) is raised here, before any block."""
    per_read = max(1, DIRECT_READ_BYTES // block_bytes) * block_bytes
    n_reads = -(-length // per_read)
    span = min(per_read, length)
    buffers = [_aligned_buffer(span + 2 * DIRECT_ALIGN) for _ in range(min(n_reads, DIRECT_AHEAD + 1))]

    def fetch(k: int) -> np.ndarray:
        a = offset + k * per_read
        b = min(a + per_read, offset + length)
        lo, hi = a - a % DIRECT_ALIGN, -(-b // DIRECT_ALIGN) * DIRECT_ALIGN
        buf = buffers[k % len(buffers)]
        # one read: a direct read comes back short only at the end of the file
        if os.preadv(fd, [memoryview(buf)[: hi - lo]], lo) < b - lo:
            raise _short(path, offset, length)
        return buf[a - lo: b - lo]

    def blocks(first: np.ndarray) -> Iterator[np.ndarray]:
        with ThreadPoolExecutor(1, thread_name_prefix="brainnet-direct-read") as pool:
            ahead = deque(pool.submit(fetch, k) for k in range(1, len(buffers)))
            for k in range(n_reads):
                data = first if k == 0 else ahead.popleft().result()
                for j in range(0, data.size, block_bytes):
                    yield data[j: j + block_bytes]
                if k + len(buffers) < n_reads:  # into the buffer just handed out, which the caller is done with
                    ahead.append(pool.submit(fetch, k + len(buffers)))

    return blocks(fetch(0))


def read_blocks(path: str | os.PathLike, offset: int, length: int, block_bytes: int,
                direct: bool | None = None) -> Iterator[np.ndarray]:
    """Bytes ``[offset, offset + length)`` of ``path`` as consecutive uint8 blocks of ``block_bytes``
    (the last one shorter when ``length`` is not a multiple).

    Args:
        direct: True: read ``O_DIRECT`` where the system allows it; False: through the page cache;
            None: ``O_DIRECT`` where allowed and the range is not cached (:func:`range_cached`).

    Yields:
        uint8 [block_bytes] views of reused buffers: each is valid until the next one is asked for.

    Raises:
        EOFError: the file ends before ``offset + length``.
        OSError: the read failed.

    Close the generator (``contextlib.closing``) when leaving it early, so its reading thread ends.
    """
    path = Path(path)
    if length <= 0:
        return
    block_bytes = max(1, int(block_bytes))
    fd, direct_fd = os.open(path, os.O_RDONLY), None
    try:
        if os.fstat(fd).st_size < offset + length:
            raise _short(path, offset, length)
        if direct if direct is not None else range_cached(fd, offset, length) is False:
            direct_fd = _open_direct(path)
        blocks = None
        if direct_fd is not None:
            try:
                blocks = _direct_blocks(direct_fd, path, offset, length, block_bytes)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                log.debug("%s: direct read refused (%s); reading through the page cache", path, exc)
        # closing this generator closes ``blocks`` first: its reading thread ends before the files close
        yield from blocks if blocks is not None else _buffered_blocks(fd, path, offset, length, block_bytes)
    finally:
        if direct_fd is not None:
            os.close(direct_fd)
        os.close(fd)
