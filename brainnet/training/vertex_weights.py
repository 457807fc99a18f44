"""Per-vertex loss weights from the EMA of validation improvement (optional; the Mem recipe's
"focus on the vertices that are still learning").

After each validation pass every vertex has a Pearson r. Its improvement over the previous pass,
``d_v = r_v(now) - r_v(before)``, is smoothed by an exponential moving average ``e_v`` (factor
``decay``). Two ways to turn the EMA into weights (``TrainConfig.vertex_weighting``):

"val_ema"
    The first pass only records r; the EMA starts at the first improvement. Weights

        w_v = (1 - mix) + mix * n * clip(e_v, 0) / sum_u clip(e_u, 0)

    keep mean 1 (the loss keeps its scale) and every vertex keeps at least ``1 - mix``; when no
    vertex improves they fall back to 1. The loss is the weight-normalised mean
    ``sum(w l) / sum(w)``.
"val_ema_minmax" (the Memory Encoding Model's rule)
    r before the first pass counts as 0 and the EMA starts at 0, so the first pass folds in
    ``(1 - decay) * r``. From the first validation at an epoch >= ``start_epoch`` on, each
    validation sets ``w = (e - min) / (max - min)``, min and max taken jointly over all subjects'
    vertices (weights in [0, 1]); before that the weights are 1. The loss is the plain mean
    ``mean(w l)`` (not divided by the weights' sum). When all EMAs are equal the weights are 1.

NaN r counts as r = 0. Weights are computed once per validation (:func:`update_states`) and kept
in the state, so a checkpoint resumes with the weights in use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

#: TrainConfig.vertex_weighting values.
WEIGHTINGS: tuple[str, ...] = ("none", "val_ema", "val_ema_minmax")


@dataclass
class VertexWeightState:
    """State of one subject: last_r, ema (V,) float32; steps: improvements folded into the EMA;
    epoch: epoch of the last validation folded in (-1: unknown); weights: (V,) loss weights in use
    (None: uniform)."""

    last_r: torch.Tensor
    ema: torch.Tensor
    steps: int = 0
    epoch: int = -1
    weights: torch.Tensor | None = None

    def to_dict(self) -> dict:
        return {"last_r": self.last_r.cpu(), "ema": self.ema.cpu(), "steps": int(self.steps), "epoch": int(self.epoch),
                "weights": None if self.weights is None else self.weights.cpu()}

    @classmethod
    def from_dict(cls, d: dict) -> VertexWeightState:
        w = d.get("weights")
        return cls(d["last_r"].float(), d["ema"].float(), int(d["steps"]), int(d.get("epoch", -1)),
                   None if w is None else w.float())


def update_ema(state: VertexWeightState | None, r: torch.Tensor, decay: float, zero_start: bool = False,
               epoch: int = -1) -> VertexWeightState:
    """Fold one validation pass's per-vertex r (V,) into the state (a new state when None).

    ``zero_start=False`` ("val_ema"): the first pass only records r and the first improvement
    becomes the EMA. ``zero_start=True`` ("val_ema_minmax"): r and the EMA start at 0, every pass
    (the first included) is ``e = decay * e + (1 - decay) * (r - r_before)``. The new state keeps
    the old one's weights.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    r = torch.nan_to_num(r.detach().float().cpu(), nan=0.0)
    if state is None:
        if not zero_start:
            return VertexWeightState(r.clone(), torch.zeros_like(r), 0, epoch)
        state = VertexWeightState(torch.zeros_like(r), torch.zeros_like(r), 0)
    if state.last_r.shape != r.shape:
        raise ValueError(f"r has {r.numel()} vertices, the state {state.last_r.numel()}")
    gain = r - state.last_r
    ema = gain if state.steps == 0 and not zero_start else decay * state.ema + (1.0 - decay) * gain
    return VertexWeightState(r.clone(), ema, state.steps + 1, epoch, state.weights)


def weights_from_ema(ema: torch.Tensor, mix: float) -> torch.Tensor:
    """"val_ema" loss weights (V,) with mean 1 from the improvement EMA (V,); see the module docstring."""
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    pos = ema.clamp_min(0.0)
    total = float(pos.sum())
    if total <= 0.0 or mix == 0.0:
        return torch.ones_like(ema)
    return (1.0 - mix) + mix * pos * (ema.numel() / total)


def minmax_weights(emas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """"val_ema_minmax" weights: subject -> (V_s,) EMA scaled to [0, 1] by the min and max over
    all subjects' vertices together (all ones when they are equal)."""
    if not emas:
        return {}
    joint = torch.cat([e.flatten() for e in emas.values()])
    lo, hi = joint.min(), joint.max()
    if not bool(hi > lo):
        return {s: torch.ones_like(e) for s, e in emas.items()}
    return {s: (e - lo) / (hi - lo) for s, e in emas.items()}


def update_states(mode: str, states: dict[str, VertexWeightState], per_vertex_r: dict[str, torch.Tensor],
                  decay: float, epoch: int, mix: float = 1.0, start_epoch: int = 0) -> dict[str, VertexWeightState]:
    """One validation pass: fold each subject's per-vertex r (V_s,) into its EMA and set the weights
    for the training that follows. Returns the new subject -> state dict (``states`` is not changed).

    ``mode``: "val_ema" (``mix`` used) or "val_ema_minmax" (weights from the first pass at
    ``epoch >= start_epoch`` on, scaled jointly over every subject in the returned dict).
    """
    if mode not in WEIGHTINGS[1:]:
        raise ValueError(f"mode must be one of {WEIGHTINGS[1:]}, got {mode!r}")
    minmax = mode == "val_ema_minmax"
    out = dict(states)
    for s, r in per_vertex_r.items():
        out[s] = update_ema(out.get(s), r, decay, zero_start=minmax, epoch=epoch)
    if not minmax:
        return {s: replace(st, weights=weights_from_ema(st.ema, mix) if st.steps > 0 else None)
                for s, st in out.items()}
    if epoch < start_epoch:
        return out
    weights = minmax_weights({s: st.ema for s, st in out.items()})
    return {s: replace(st, weights=weights[s]) for s, st in out.items()}


def weighted_vertex_mean(per_element: torch.Tensor, weights: torch.Tensor | None,
                         by_weight_sum: bool = True) -> torch.Tensor:
    """Mean of a (B, N) loss over samples and vertices, vertex n weighted by weights (N,):
    ``sum(w l) / (B * sum(w))`` (``by_weight_sum``) or ``sum(w l) / (B * N)``."""
    if weights is None:
        return per_element.mean()
    if weights.shape != per_element.shape[1:]:
        raise ValueError(f"weights {tuple(weights.shape)} do not match the loss's vertices {per_element.shape[1]}")
    w = weights.to(per_element.dtype)
    if not by_weight_sum:
        return (per_element * w).mean()
    return (per_element * w).sum() / (w.sum() * per_element.shape[0]).clamp_min(1e-12)


def normalizes_by_weight_sum(mode: str) -> bool:
    """Whether ``mode``'s weighted loss divides by the weights' sum (False: by the element count)."""
    return mode != "val_ema_minmax"
