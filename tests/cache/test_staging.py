"""StagedWriter: batches written in order, by one thread, without a buffer set reused too early.

On the CPU the staging copies are synchronous, so these tests exercise the ordering and the
buffer reuse of the GPU fill's writer (the GPU path itself is in tests/test_gpu.py)."""

import threading
import time

import pytest
import torch

from brainnet.cache.staging import PinnedStaging, StagedWriter


def _batch(k: int, b: int = 3) -> dict:
    return {"local": torch.full((b, 2, 2), float(k)), "global": torch.arange(b, dtype=torch.float32) + 100 * k}


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_writes_arrive_in_order_with_their_values(depth):
    """A slow writer: every batch is written once, in order, with the values it was put with (a
    buffer set reused before its write would show a later batch's values), from one thread that is
    not the caller's."""
    seen, threads = [], set()

    def write(meta, views):
        time.sleep(0.01)
        threads.add(threading.get_ident())
        seen.append((meta, views["local"].clone(), views["global"].clone()))

    with StagedWriter(write, depth=depth) as w:
        for k in range(7):
            w.put(_batch(k, b=3 if k < 6 else 1), meta=k)
    assert [m for m, _, _ in seen] == list(range(7))
    for k, local, glob in seen:
        torch.testing.assert_close(local, _batch(k, b=len(local))["local"])
        torch.testing.assert_close(glob, _batch(k, b=len(glob))["global"])
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_write_error_comes_back_and_later_batches_are_not_written():
    written = []

    def write(meta, views):
        if meta == 2:
            raise OSError("disk full")
        written.append(meta)

    w = StagedWriter(write, depth=2)
    with pytest.raises(OSError, match="disk full"):
        for k in range(8):
            w.put(_batch(k), meta=k)
        w.close()
    w.close(raise_errors=False)  # idempotent after the error
    assert written == [0, 1]
    with pytest.raises(RuntimeError, match="closed"):
        w.put(_batch(9), meta=9)


def test_leaving_on_an_error_keeps_that_error():
    """An error in the caller's loop is not replaced by a write's error; the writes under way finish."""
    def write(meta, views):
        raise ValueError("write failed")

    with pytest.raises(KeyError, match="caller"), StagedWriter(write) as w:
        w.put(_batch(0), meta=0)
        raise KeyError("caller")


def test_staging_sets_cycle():
    st = PinnedStaging(n_sets=3)
    ptrs = [st.stage(_batch(k))[0]["local"].data_ptr() for k in range(6)]
    assert ptrs[:3] == ptrs[3:] and len(set(ptrs[:3])) == 3
    with pytest.raises(ValueError):
        PinnedStaging(n_sets=0)
