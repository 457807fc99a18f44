"""The writer lock of ``prepare``: ``<parent>/.<out name>.prepare.lock`` beside the output folder.

Beside, not inside, so that the lock exists before the output folder does and an output folder that
a failed run created can be removed whole. See :mod:`brainnet.locks` for what the lock guarantees.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from brainnet.locks import writer_lock


def prepare_lock_path(out: Path) -> Path:
    """The lock file of output folder ``out``."""
    return out.parent / f".{out.name}.prepare.lock"


@contextlib.contextmanager
def prepare_lock(out: Path, timeout: float | None = None) -> Iterator[Path]:
    """Hold the lock of ``out`` (waiting ``timeout`` s; None: as long as another prepare runs)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(prepare_lock_path(out), "brainnet prepare", timeout,
                     advice="another prepare is writing this dataset; wait for it (lock_timeout=None)") as path:
        yield path
