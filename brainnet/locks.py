"""One writer at a time: the lock taken by ``prepare``, a memmap token-cache fill and a training run.

:func:`writer_lock` holds an exclusive ``flock`` on a lock file and writes the holder into it (JSON:
host, pid, what it does, since when). A second process asking for the same lock waits (``timeout``
seconds, None = as long as it takes) and then raises :class:`brainnet.errors.LockedError` naming the
file and the holder. The lock file is removed when the holder lets go.

Crashes and stale locks
-----------------------
The kernel drops an ``flock`` when its holder dies, SIGKILL included, so a lock left by a crashed run
never blocks: the next run takes it over and logs that the previous holder (same host, pid no longer
alive) is gone. Children forked while the lock is held (DataLoader workers) share it until they exit.

Shared filesystems
------------------
* Local filesystems (ext4, xfs, btrfs, tmpfs): exclusion holds between all processes of the machine.
* NFS: the Linux client (since 2.6.12) implements ``flock`` with whole-file POSIX locks held by the
  server (NLM for NFSv3, the protocol itself for NFSv4), so exclusion holds between machines
  too. A crashed client's lock is freed only when the server notices (the NFSv4 lease, typically 90 s;
  NLM: when the client reboots). Mounted with ``local_lock=flock`` or ``nolock`` the lock is local to
  each machine: two machines can then write at once, and the holder recorded in the file is the only
  warning (its host is another machine's, and its pid cannot be checked from here).
* Filesystems without lock support (some FUSE mounts): ``flock`` fails and this module falls back to
  the file's existence: created with ``O_EXCL``, removed on release, and taken over when it names a
  dead pid on this host (a file naming another host is never taken over; remove it by hand).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from brainnet.errors import LockedError

log = logging.getLogger(__name__)

#: Seconds between two tries while waiting for a lock.
POLL_SECONDS = 0.2
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine (zombies count as alive)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_holder(path: str | os.PathLike) -> dict:
    """The holder recorded in a lock file (``{}`` when it is absent, empty or unreadable)."""
    try:
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def describe(holder: dict) -> str:
    """``"pid 123 on host h (prepare, since 2024-01-01 12:00:00)"`` or ``"an unknown process"``."""
    if not holder:
        return "an unknown process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("time", 0)))
    return f"pid {holder.get('pid')} on host {holder.get('host')} ({holder.get('what', '?')}, since {since})"


def _is_stale(holder: dict) -> bool:
    return bool(holder) and holder.get("host") == socket.gethostname() and not pid_alive(holder.get("pid", -1))


class _Held:
    """An acquired lock: its open file (None in the no-flock fallback) and path."""

    def __init__(self, path: Path, fd: int | None):
        self.path, self.fd = path, fd

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            # unlink while still holding it: a waiter that opened this file sees it was replaced
            self.path.unlink()
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def _record(fd: int, what: str) -> None:
    body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "what": what, "time": time.time()})
    os.ftruncate(fd, 0)
    os.pwrite(fd, body.encode(), 0)


def _try_flock(path: Path, what: str) -> _Held | None:
    """One attempt; None when another process holds the lock. Raises OSError(_NO_FLOCK) without flock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    try:
        same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        same = False
    if not same:  # the holder removed the file between our open and flock: start again
        os.close(fd)
        return _try_flock(path, what)
    previous = read_holder(path)
    if previous and _is_stale(previous):
        log.warning("%s: taking over the lock of %s (that process is gone)", path, describe(previous))
    _record(fd, what)
    return _Held(path, fd)


def _try_exclusive_create(path: Path, what: str) -> _Held | None:
    """Fallback without flock: the file's existence is the lock; a stale one (dead pid, this host) is replaced."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        holder = read_holder(path)
        if _is_stale(holder):
            log.warning("%s: removing the stale lock of %s (that process is gone)", path, describe(holder))
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return None
    _record(fd, what)
    os.close(fd)
    return _Held(path, None)


@contextlib.contextmanager
def writer_lock(path: str | os.PathLike, what: str, timeout: float | None = None,
                advice: str = "") -> Iterator[Path]:
    """Hold the lock file ``path`` for the duration of the ``with`` block (its parent must exist).

    Args:
        path: the lock file (created; removed on release).
        what: what the holder does (shown to a process that finds the lock taken), e.g. ``"prepare"``.
        timeout: seconds to wait for another holder; 0 refuses at once, None waits as long as it takes.
        advice: appended to the :class:`LockedError` message.

    Raises:
        LockedError: another process still holds the lock after ``timeout`` seconds.
    """
    path = Path(path)
    deadline = None if timeout is None else time.monotonic() + max(float(timeout), 0.0)
    attempt, announced = _try_flock, False
    while True:
        try:
            held = attempt(path, what)
        except OSError as exc:
            if attempt is not _try_flock or exc.errno not in _NO_FLOCK:
                raise
            log.warning("%s: the filesystem has no flock (%s); locking by exclusive creation", path, exc)
            attempt = _try_exclusive_create
            continue
        if held is not None:
            break
        holder = read_holder(path)
        if deadline is not None and time.monotonic() >= deadline:
            raise LockedError(path, describe(holder), advice)
        if not announced:
            log.info("%s: waiting for %s to finish", path, describe(holder))
            announced = True
        time.sleep(POLL_SECONDS)
    try:
        yield path
    finally:
        held.release()
