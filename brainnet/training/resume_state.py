"""What makes a killed training resumable and exact: atomic checkpoint files, the random generators'
state in them, and the run folder's writer lock.

A kill (SIGKILL, power loss of the process) leaves the run folder with the last complete checkpoints:
:class:`AtomicCheckpointIO` writes each one to a temporary sibling, fsyncs it and renames it into
place (Lightning's own writer stages it in the system temp folder, which is not atomic when that
lies on another filesystem, and leaves the stage behind). A rerun with ``resume=True`` continues from
``last.ckpt``, written at each epoch end: the steps of an unfinished epoch are lost and redone.

Random generators: training draws from the global ones (dropout, the vertex subset of each step).
Lightning's checkpoints hold weights, optimiser, schedule and loop counters but not these states, so a
run resumed from an epoch-boundary checkpoint would continue with other draws. :class:`RngStateCallback`
stores them in every checkpoint (as tensors, lists and ints: checkpoints are read with
``weights_only=True``) and restores them on resume; on one CPU process the resumed run then ends with
the weights of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO

from brainnet.data.io import atomic_path, remove_tmp_files, space_errors
from brainnet.locks import writer_lock

#: The lock file of a run folder (held by the training writing into it).
RUN_LOCK = ".run.lock"


def collect_rng_states() -> dict:
    """The states of torch (CPU and every visible CUDA device), numpy's and Python's global generators."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (the global one is what is used)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [int(version), list(internal), gauss_next],
    }


def set_rng_states(states: dict) -> None:
    """Restore what :func:`collect_rng_states` returned (CUDA states only for the devices present)."""
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


class RngStateCallback(pl.Callback):
    """Saves the global generator states with each checkpoint and restores them when a run resumes.

    With several processes each rank restores the state it saved only if it is rank 0's (the
    checkpoint holds rank 0's); exact continuation is a one-process guarantee.
    """

    def state_dict(self) -> dict:
        return collect_rng_states()

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict:
            set_rng_states(state_dict)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint writer: ``torch.save`` into ``<name>.tmp-<pid><suffix>``, fsync, rename.

    A failed write removes the temporary file and leaves the previous checkpoint of that name untouched;
    lack of space raises :class:`~brainnet.errors.DiskFullError` naming the checkpoint.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        buffer = io.BytesIO()  # serialised first: torch's own file writer hides the OSError of a full disk
        torch.save(checkpoint, buffer)
        with atomic_path(path) as tmp, space_errors(path, buffer.getbuffer().nbytes), open(tmp, "wb") as fh:
            fh.write(buffer.getbuffer())


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[Path]:
    """Hold the writer lock of run folder ``out`` (which must exist); refuses at once with
    :class:`~brainnet.errors.LockedError` when another training holds it. Temporary checkpoint files a
    killed run left behind are removed once the lock is held.

    The other processes of a multi-process run (``LOCAL_RANK`` / ``NODE_RANK`` / ``RANK`` > 0 in their
    environment, as Lightning's DDP launcher and torchrun set them) write under rank 0's lock."""
    if any(int(os.environ.get(k, "0") or 0) > 0 for k in ("LOCAL_RANK", "NODE_RANK", "RANK")):
        yield out
        return
    with writer_lock(out / RUN_LOCK, "brainnet training", timeout=0,
                     advice="another training is writing this run folder; use another out_dir or wait for it"):
        remove_tmp_files(out / "checkpoints")
        yield out
