"""Issue 13 §4-6: SIGKILL at random points, a full disk, read-only sources, two writers at once.

The kill and disk-full runs happen in one subprocess per job (``tests/_crash.py``) that forks a child
per run: each kill point is the N-th call (seeded RNG) of a write function (``os.replace``,
``os.pwrite``, ``os.fsync``, preallocation, ``torch.save``, a cache row write, a training step).
A full disk is an ``RLIMIT_FSIZE`` limit (SIGXFSZ ignored: writes fail with EFBIG) in the child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from brainnet.errors import LockedError
from brainnet.locks import read_holder, writer_lock

from _mini_cache import mini_tree, prepared_tiny, result_path, tiny_features

ROOT = Path(__file__).resolve().parents[1]
KILLS = 4


def _drive(scenario: str, args: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "_crash.py"), scenario, json.dumps(args)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_killed_then_finished(rec: dict) -> None:
    kills = rec["kills"]
    assert sum(k["signal"] == 9 for k in kills) >= 3, kills  # several kills, also of resumed runs
    assert rec["final"]["signal"] == 0 and "error" not in rec["final"], rec["final"]


def test_prepare_killed_at_random_points_disk_full_and_sources_read_only(tmp_path_factory, tmp_path):
    tree = mini_tree(tmp_path_factory)
    rec = _drive("prepare", {"nsd": str(tree.nsd), "alg": str(tree.algonauts), "out": str(tmp_path / "out"),
                             "ref": str(tmp_path / "ref"), "full": str(tmp_path / "full"), "seed": 13,
                             "kills": KILLS, "fsize": 1_000_000})
    _assert_killed_then_finished(rec)
    assert rec["digests"] == rec["ref_digests"]  # resumed after every kill: the same bytes
    assert rec["final"]["opened"] == []  # no open for writing under the source trees (audit hook)
    # the full disk: fmri preallocation fails with one clear line naming the file; no dataset, no temp file
    assert rec["disk_full"]["error"].startswith("DiskFullError: ") and "fmri.partial.npy: cannot allocate" in \
        rec["disk_full"]["error"] and "File too large" in rec["disk_full"]["error"]
    left = rec["left_after_full"]
    assert left and all(p.startswith(".prepare-work/") for p in left) and not any(".tmp-" in p for p in left)
    assert "error" not in rec["after_full"] and rec["full_digests"] == rec["ref_digests"]


def test_memmap_cache_fill_killed_at_random_points_and_disk_full(tmp_path):
    rec = _drive("cache", {"cache": str(tmp_path / "c"), "ref": str(tmp_path / "ref"), "full": str(tmp_path / "f"),
                           "seed": 13, "kills": KILLS, "fsize": 20_000})
    _assert_killed_then_finished(rec)
    assert rec["digests"] == rec["ref_digests"] and len(rec["digests"]) == 9  # header + 4 local + 4 global
    assert rec["disk_full"]["error"].startswith("DiskFullError: ") and ".f16: cannot allocate" in \
        rec["disk_full"]["error"]
    assert rec["left_after_full"] == {}  # the failed first allocation rolled back: no cache files
    assert "error" not in rec["after_full"] and rec["full_digests"] == rec["ref_digests"]


def test_training_killed_at_random_points_resumes_to_the_same_weights(tmp_path_factory, tmp_path):
    root = prepared_tiny(tmp_path_factory)
    tiny_features(tmp_path_factory)
    folders = {k: str(tmp_path / k) for k in ("out", "ref", "epoch", "full")}
    rec = _drive("fit", {"data": str(root), "features": str(result_path(tmp_path_factory, "features-tiny-32px-pool4")),
                         "seed": 13, "kills": KILLS, "fsize": 30_000, **folders})
    _assert_killed_then_finished(rec)
    assert rec["epoch_kill"]["signal"] == 9 and "error" not in rec["epoch_final"]
    assert rec["steps"] == [30, 30, 30, 30] and all(rec["metrics"])
    assert rec["diff_epoch"] <= 1e-6 and rec["diff_random"] <= 1e-6
    err = rec["disk_full"]["error"]
    assert err.startswith("DiskFullError: ") and ".ckpt: cannot allocate" in err, err
    assert rec["left_after_full"] == ["config.json"]  # no checkpoint, no temporary file, no lock
    assert "error" not in rec["after_full"]


# ------------------------------------------------------------------ two writers
def test_lock_refuses_or_waits_and_names_the_holder(tmp_path):
    lock = tmp_path / "x.lock"
    with writer_lock(lock, "first"):
        holder = read_holder(lock)
        assert holder["pid"] == os.getpid() and holder["what"] == "first"
        pattern = rf"x\.lock: locked by pid {os.getpid()} on host .*\(first, since"
        with pytest.raises(LockedError, match=pattern), writer_lock(lock, "second", timeout=0):
            pass
        with pytest.raises(LockedError), writer_lock(lock, "second", timeout=0.3):
            pass
    assert not lock.exists()
    # a waiter gets the lock once the holder lets go
    order = []
    with writer_lock(lock, "first"):
        def second():
            with writer_lock(lock, "second", timeout=10):
                order.append("second")
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first done")
    t.join()
    assert order == ["first done", "second"] and not lock.exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    lock = tmp_path / "x.lock"
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(proc.stdout)  # a pid that has exited
    import socket

    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead, "what": "prepare", "time": 0}))
    with caplog.at_level("WARNING", logger="brainnet.locks"), writer_lock(lock, "new", timeout=0):
        assert read_holder(lock)["pid"] == os.getpid()
    assert f"pid {dead}" in caplog.text and "gone" in caplog.text


def test_second_prepare_cache_fill_and_training_are_refused_while_one_runs(tmp_path_factory, tmp_path):
    from brainnet.backbones import create_backbone
    from brainnet.cache import TokenCache
    from brainnet.data.prep import prepare
    from brainnet.data.prep.lock import prepare_lock
    from brainnet.training.fit import fit_encoder
    from brainnet.training.resume_state import run_lock

    from _mini_cache import tiny_fit_config

    tree = mini_tree(tmp_path_factory)
    out = tmp_path / "prepared"
    with prepare_lock(out), pytest.raises(LockedError, match="prepared.prepare.lock: locked by pid .*another prepare"):
        prepare(tree.nsd, tree.algonauts, out, image_size=32, progress=False, lock_timeout=0.2)
    assert not out.exists()
    bb = create_backbone("brainnet-tiny-random", seed=0)
    (tmp_path / "cache").mkdir()
    cache = TokenCache(bb, pool=4, storage="memmap", cache_dir=tmp_path / "cache")
    with writer_lock(cache.path.with_name(cache.path.name + ".lock"), "token cache fill"):
        t = threading.Thread(target=lambda: cache.fill(__import__("numpy").zeros((2, 32, 32, 3), "uint8"),
                                                        num_workers=0, progress=False))
        t.start()
        time.sleep(0.5)
        assert len(cache) == 0 and t.is_alive()  # the second filler waits
    t.join(30)
    assert len(cache) == 2
    run = tmp_path / "run"
    run.mkdir()
    with run_lock(run), pytest.raises(LockedError, match=r"run/\.run\.lock: locked by pid .*another training"):
        fit_encoder(tiny_fit_config(prepared_tiny(tmp_path_factory), run))
    assert sorted(p.name for p in run.iterdir()) == []
