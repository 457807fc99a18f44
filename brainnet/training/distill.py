"""Prediction distillation: train a student on a blend of an ensemble's predictions and the data.

The teacher's predictions for every trial are saved once (:func:`save_teacher`); training then
mixes teacher and measured responses with the teacher's share ``a`` falling linearly from 1 to 0
over ``handover_steps`` or ``handover_epochs`` (:func:`brainnet.training.optim.teacher_share`):
``TrainConfig.distill_mix="targets"`` trains on ``a * teacher + (1 - a) * measured``, "losses" (the
Memory Encoding Model's rule) on ``a * L(teacher) + (1 - a) * L(measured)``
(:func:`brainnet.training.optim.distillation_loss`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .evaluate import predict_dataset


def ensemble_predictions(models: Sequence[torch.nn.Module], dataset, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Mean prediction of ``models`` for every trial of ``dataset``.

    Returns dict subject -> float32 array (n_trials_of_subject, V) over the subject's FULL trial
    table (rows the dataset does not hold are 0), the layout ``TrainConfig.teacher_path`` expects.
    """
    if not models:
        raise ValueError("need at least one teacher model")
    out: dict[str, np.ndarray] = {}
    for model in models:
        for s, p in predict_dataset(model, dataset, batch_size).items():
            if s not in out:
                st = dataset.data[s]
                out[s] = np.zeros((st.image.size, st.n_vertices), np.float32)
            out[s][p.trial] += p.pred / len(models)
    return out


def save_teacher(path: str | Path, predictions: dict[str, np.ndarray]) -> Path:
    """Write teacher predictions (subject -> (n_trials, V)) to an .npz (one array per subject)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, **{s: np.asarray(a, np.float32) for s, a in predictions.items()})
    return path


def distill(config, teacher_path: str | Path, handover_steps: int | None = None, features=None):
    """``fit_encoder`` with the teacher's predictions mixed in (see module doc).

    ``handover_steps`` None keeps the config's own handover (``handover_epochs`` of a preset such as
    ``mem-algonauts2023``, or its ``handover_steps``); a number sets a handover over that many steps."""
    from .fit import fit_encoder

    if handover_steps is not None:
        if handover_steps < 1:
            raise ValueError(f"handover_steps must be >= 1, got {handover_steps}")
        config = config.replace(handover_steps=int(handover_steps), handover_epochs=0)
    elif config.handover_steps < 1 and config.handover_epochs < 1:
        raise ValueError("pass handover_steps, or use a config with handover_steps or handover_epochs >= 1")
    return fit_encoder(config.replace(teacher_path=str(teacher_path)), features=features)
