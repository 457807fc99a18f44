"""``read_blocks``: the same bytes through the page cache and past it (``O_DIRECT``), the automatic choice
between them, short files, a refused direct read, and no reading thread left behind."""

from __future__ import annotations

import errno
import os
import threading

import numpy as np
import pytest

from brainnet.data.formats import blockread as br


def _write(path, nbytes, rng) -> bytes:
    raw = rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    path.write_bytes(raw)
    return raw


def _evict(path) -> None:
    """Drop ``path``'s pages from the page cache (clean pages: sync first)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _cached(path) -> bool | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        return br.range_cached(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _direct_supported(path) -> bool:
    """O_DIRECT opens, the cache can be probed, and eviction works where ``path`` lies."""
    if not hasattr(os, "posix_fadvise") or br._open_direct(path) is None:
        return False
    _evict(path)
    return _cached(path) is False


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("brainnet-direct-read")]


@pytest.mark.parametrize("direct", [False, True, None])
@pytest.mark.parametrize("offset,length,block", [(284, 300_000, 4 * 1237), (0, 262_144, 65_536),
                                                 (4095, 1, 7), (5000, 700_001, 700_001)])
def test_blocks_are_the_bytes_of_the_range(tmp_path, rng, monkeypatch, direct, offset, length, block):
    """Every mode yields bytes [offset, offset + length) in blocks of ``block`` (the last one shorter), with
    several direct reads per range (unaligned starts and ends, reads queued ahead)."""
    monkeypatch.setattr(br, "DIRECT_READ_BYTES", 3 * 4096 + 100)
    path = tmp_path / "data.bin"
    raw = _write(path, offset + length + 333, rng)
    if direct is not False:
        _evict(path)
    blocks = [b.copy() for b in br.read_blocks(path, offset, length, block, direct=direct)]
    assert [b.size for b in blocks[:-1]] == [block] * (len(blocks) - 1) and 0 < blocks[-1].size <= block
    assert np.concatenate(blocks).tobytes() == raw[offset:offset + length]
    assert not _threads()


def test_direct_reads_bypass_the_cache_and_the_automatic_choice_follows_it(tmp_path, rng, monkeypatch):
    """Read past the cache, a cold file stays out of it; the automatic mode reads a cold file directly
    and a cached one through the cache."""
    path = tmp_path / "betas.bin"
    raw = _write(path, 3 << 20, rng)
    if not _direct_supported(path):
        pytest.skip("no O_DIRECT, RWF_NOWAIT probe or page-cache eviction on this file system")
    opened = []
    real_open = br._open_direct
    monkeypatch.setattr(br, "_open_direct", lambda p: opened.append(p) or real_open(p))

    got = b"".join(b.tobytes() for b in br.read_blocks(path, 0, len(raw), 1 << 16))  # cold: direct
    assert got == raw and len(opened) == 1
    assert _cached(path) is False  # the direct reads left no page behind

    got = b"".join(b.tobytes() for b in br.read_blocks(path, 0, len(raw), 1 << 16, direct=False))
    assert got == raw and _cached(path) is True
    got = b"".join(b.tobytes() for b in br.read_blocks(path, 0, len(raw), 1 << 16))  # cached: buffered
    assert got == raw and len(opened) == 1


@pytest.mark.parametrize("direct", [False, True])
def test_short_file_fails_before_any_block_and_a_file_cut_while_read(tmp_path, rng, monkeypatch, direct):
    """A file shorter than the range raises EOFError before a block is handed out; a file cut short after
    the first block raises EOFError when the missing bytes are reached (in the direct mode, from its
    reading thread), and no thread is left."""
    monkeypatch.setattr(br, "DIRECT_READ_BYTES", 1 << 16)
    path = tmp_path / "cut.mgh"
    _write(path, 1 << 20, rng)
    with pytest.raises(EOFError, match="cut.mgh"):
        next(br.read_blocks(path, 284, 1 << 20, 4096, direct=direct))
    blocks = br.read_blocks(path, 284, (1 << 20) - 284, 4096, direct=direct)
    next(blocks)
    os.truncate(path, 300_000)
    with pytest.raises(EOFError, match="ends before byte"):
        for _ in blocks:
            pass
    assert not _threads()


def test_a_refused_direct_read_falls_back_to_the_cache(tmp_path, rng, monkeypatch):
    """A file system that opens ``O_DIRECT`` but refuses the read (EINVAL: another alignment) is read
    through the page cache; any other error of a direct read is raised."""
    path = tmp_path / "x.bin"
    raw = _write(path, 100_000, rng)
    if br._open_direct(path) is None:
        pytest.skip("no O_DIRECT here")

    def refuse(*args):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(br, "_direct_blocks", refuse)
    assert b"".join(b.tobytes() for b in br.read_blocks(path, 10, 99_000, 4096, direct=True)) == raw[10:99_010]

    def broken(*args):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(br, "_direct_blocks", broken)
    with pytest.raises(OSError, match="Input/output"):
        next(br.read_blocks(path, 10, 99_000, 4096, direct=True))


def test_leaving_early_ends_the_reading_thread(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(br, "DIRECT_READ_BYTES", 1 << 16)
    path = tmp_path / "y.bin"
    _write(path, 1 << 20, rng)
    blocks = br.read_blocks(path, 0, 1 << 20, 4096, direct=True)
    next(blocks)
    blocks.close()
    assert not _threads()
