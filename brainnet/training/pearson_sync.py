"""Per-vertex Pearson statistics reduced across DDP processes.

Each process streams its share of the validation trials into one
:class:`~brainnet.training.metrics.PearsonAccumulator` per subject. :func:`reduce_accumulators`
gathers every process's statistics (count, means and centred sums of squares / products, float64)
and merges them in rank order, so every process ends with the statistics of the whole split and
computes the same r as one process that saw all trials (up to float64 rounding). A mean of
per-process r would not be: r is not additive.

The statistics are exchanged as one flat float64 tensor per subject:
``[n, mean_x (V), mean_y (V), Sxx (V), Syy (V), Sxy (V)]`` (length ``1 + 5 V``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from .metrics import PearsonAccumulator

#: ``gather(t)`` -> tensor (world_size, *t.shape): every process's ``t``, in rank order
#: (e.g. ``LightningModule.all_gather`` when world_size > 1).
Gather = Callable[[torch.Tensor], torch.Tensor]


def reduce_accumulators(local: Mapping[str, PearsonAccumulator], subjects: Sequence[str],
                        gather: Gather | None, device=None) -> dict[str, PearsonAccumulator]:
    """The accumulators of all processes, merged per subject.

    Parameters
    ----------
    local : subject -> this process's accumulator (subjects it saw no trial of may be missing)
    subjects : every subject, in the same order on every process
    gather : see :data:`Gather`; None = a single process (``local`` is returned as it is)
    device : where the zero statistics of unseen subjects are made (the gather's device)

    Returns
    -------
    subject -> accumulator over every process's trials (subjects no process saw are left out).
    Every process gets bit-identical statistics (same inputs merged in the same order).
    """
    if gather is None:
        return dict(local)
    extra = set(local) - set(subjects)
    if extra:
        raise ValueError(f"validation batches of subjects {sorted(extra)} not in {list(subjects)}")
    counts = torch.tensor([local[s].n_vertices if s in local else 0 for s in subjects],
                          dtype=torch.int64, device=device)
    all_counts = gather(counts).reshape(-1, len(subjects))  # (world, S)
    out: dict[str, PearsonAccumulator] = {}
    for j, s in enumerate(subjects):
        seen = {int(v) for v in all_counts[:, j].tolist()} - {0}
        if len(seen) > 1:
            raise ValueError(f"processes disagree on the vertex count of {s}: {sorted(seen)}")
        if not seen:
            continue
        n_vertices = seen.pop()
        mine = local[s].pack(n_vertices, device) if s in local else PearsonAccumulator().pack(n_vertices, device)
        stats = gather(mine).reshape(all_counts.shape[0], -1)
        acc = PearsonAccumulator()
        for row in stats:  # rank order: the same sums in the same order on every process
            acc.merge_packed(row)
        out[s] = acc
    return out
