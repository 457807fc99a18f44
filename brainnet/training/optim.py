"""Loss, parameter groups and learning-rate schedule (plain functions; the LightningModule calls them)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .vertex_weights import weighted_vertex_mean

#: Parameter-name fragments of the per-vertex readouts (their own learning rate).
READOUT_PREFIX = "readouts."


def encoding_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "smooth_l1", beta: float = 0.01,
                  vertex_weights: torch.Tensor | None = None, by_weight_sum: bool = True) -> torch.Tensor:
    """Mean loss over samples and vertices: pred, target (B, N) -> scalar.

    ``kind``: "smooth_l1" (Huber-like with transition ``beta``) or "mse". ``vertex_weights``
    (N,), optional: a weighted mean over vertices, divided by the weights' sum or, with
    ``by_weight_sum=False``, by the element count (see :func:`.vertex_weights.weighted_vertex_mean`).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    pred, target = pred.float(), target.float()
    if kind == "smooth_l1":
        per = F.smooth_l1_loss(pred, target, beta=beta, reduction="none")
    elif kind == "mse":
        per = F.mse_loss(pred, target, reduction="none")
    else:
        raise ValueError(f"loss must be 'smooth_l1' or 'mse', got {kind!r}")
    return weighted_vertex_mean(per, vertex_weights, by_weight_sum)


#: TrainConfig.distill_mix values: blend the targets, or the losses against truth and teacher.
DISTILL_MIXES: tuple[str, ...] = ("targets", "losses")


def teacher_share(step: int, epoch: int, handover_steps: int, handover_epochs: int) -> float:
    """Weight ``a`` of the teacher in distillation, falling linearly from 1 to 0 (then held at 0):
    ``1 - epoch / handover_epochs`` when handover_epochs > 0, else ``1 - step / handover_steps``
    when handover_steps > 0, else 0 (no distillation)."""
    if handover_epochs > 0:
        return min(1.0, max(0.0, 1.0 - epoch / handover_epochs))
    if handover_steps > 0:
        return min(1.0, max(0.0, 1.0 - step / handover_steps))
    return 0.0


def blend_targets(truth: torch.Tensor, teacher: torch.Tensor, a: float) -> torch.Tensor:
    """Distillation target ``a * teacher + (1 - a) * truth`` (``a`` from :func:`teacher_share`). Shapes (B, N)."""
    if a <= 0.0:
        return truth
    return a * teacher.to(truth.dtype) + (1.0 - a) * truth


def distillation_loss(pred: torch.Tensor, truth: torch.Tensor, teacher: torch.Tensor, a: float, mix: str,
                      kind: str = "smooth_l1", beta: float = 0.01, vertex_weights: torch.Tensor | None = None,
                      by_weight_sum: bool = True) -> torch.Tensor:
    """Loss of pred (B, N) against truth and teacher (B, N), teacher weight ``a``.

    ``mix="targets"``: ``L(pred, a * teacher + (1 - a) * truth)``; ``mix="losses"`` (the Memory
    Encoding Model's rule): ``(1 - a) * L(pred, truth) + a * L(pred, teacher)``. ``L`` is
    :func:`encoding_loss` with ``kind``, ``beta``, ``vertex_weights`` and ``by_weight_sum``.
    """
    def loss(target):
        return encoding_loss(pred, target, kind, beta, vertex_weights, by_weight_sum)

    if mix == "targets":
        return loss(blend_targets(truth, teacher, a))
    if mix != "losses":
        raise ValueError(f"mix must be one of {DISTILL_MIXES}, got {mix!r}")
    if a <= 0.0:
        return loss(truth)
    return (1.0 - a) * loss(truth) + a * loss(teacher)


def _no_decay(name: str, p: nn.Parameter) -> bool:
    """Biases, norm weights and other 1-D parameters get no weight decay."""
    return p.ndim < 2 or name.endswith(".bias") or ".norm" in name or "norm." in name


def param_groups(model: nn.Module, lr: float, weight_decay: float, readout_lr: float) -> list[dict]:
    """AdamW parameter groups: (readout | rest) x (decay | no decay); empty groups dropped.

    The readouts (parameters under ``readouts.``) use ``readout_lr``; biases / norms / 1-D
    parameters get no weight decay.
    """
    groups: dict[tuple[bool, bool], list] = {(r, d): [] for r in (True, False) for d in (True, False)}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        groups[(name.startswith(READOUT_PREFIX) or f".{READOUT_PREFIX}" in name, not _no_decay(name, p))].append(p)
    out = []
    for (readout, decay), params in groups.items():
        if params:
            out.append({"params": params, "lr": readout_lr if readout else lr,
                        "weight_decay": weight_decay if decay else 0.0,
                        "name": f"{'readout' if readout else 'body'}{'' if decay else '_nodecay'}"})
    return out


#: Learning-rate schedules of :func:`lr_multiplier` (``TrainConfig.schedule``).
SCHEDULES = ("cosine", "constant")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warmup from ~0 to 1 over ``warmup_steps``, then cosine to ``min_ratio``
    at ``total_steps`` (held there afterwards)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0,
                  schedule: str = "cosine") -> float:
    """LR multiplier at ``step`` of one of :data:`SCHEDULES`.

    "cosine": :func:`warmup_cosine`; "constant": the same linear warmup over ``warmup_steps``, then
    1 (``total_steps`` and ``min_ratio`` unused; ``warmup_steps=0`` is a constant rate from step 0).
    """
    if schedule == "cosine":
        return warmup_cosine(step, total_steps, warmup_steps, min_ratio)
    if schedule == "constant":
        return (step + 1) / warmup_steps if warmup_steps > 0 and step < warmup_steps else 1.0
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
