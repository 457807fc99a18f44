"""Per-vertex loss weights from the EMA of validation improvement (optional; the Mem recipe's
"focus on the vertices that are still learning").

After each validation pass every vertex has a Pearson r. Its improvement over the previous pass,
``d_v = r_v(now) - r_v(before)``, is smoothed by an exponential moving average ``e_v``. The
weights put more of the loss on vertices whose validation r is still rising and less on those
that have stopped (or started to overfit):

    w_v = (1 - mix) + mix * n * clip(e_v, 0) / sum_u clip(e_u, 0)

so the mean weight stays 1 (the loss keeps its scale) and every vertex keeps at least ``1 - mix``.
When no vertex improves, the weights fall back to 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class VertexWeightState:
    """EMA state of one subject: last_r, ema (V,) float32 tensors; steps: passes seen."""

    last_r: torch.Tensor
    ema: torch.Tensor
    steps: int = 0

    def to_dict(self) -> dict:
        return {"last_r": self.last_r.cpu(), "ema": self.ema.cpu(), "steps": int(self.steps)}

    @classmethod
    def from_dict(cls, d: dict) -> VertexWeightState:
        return cls(d["last_r"].float(), d["ema"].float(), int(d["steps"]))


def update_ema(state: VertexWeightState | None, r: torch.Tensor, decay: float) -> VertexWeightState:
    """Fold one validation pass's per-vertex r (V,) into the state (a new state when None).

    The first pass only records r (no improvement is known yet); NaN r counts as no change.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    r = torch.nan_to_num(r.detach().float().cpu(), nan=0.0)
    if state is None:
        return VertexWeightState(r.clone(), torch.zeros_like(r), 0)
    if state.last_r.shape != r.shape:
        raise ValueError(f"r has {r.numel()} vertices, the state {state.last_r.numel()}")
    gain = r - state.last_r
    ema = gain if state.steps == 0 else decay * state.ema + (1.0 - decay) * gain
    return VertexWeightState(r.clone(), ema, state.steps + 1)


def weights_from_ema(ema: torch.Tensor, mix: float) -> torch.Tensor:
    """Loss weights (V,) with mean 1 from the improvement EMA (V,); see the module docstring."""
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    pos = ema.clamp_min(0.0)
    total = float(pos.sum())
    if total <= 0.0 or mix == 0.0:
        return torch.ones_like(ema)
    return (1.0 - mix) + mix * pos * (ema.numel() / total)


def weighted_vertex_mean(per_element: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of a (B, N) loss over samples and vertices, vertex n weighted by weights (N,)."""
    if weights is None:
        return per_element.mean()
    if weights.shape != per_element.shape[1:]:
        raise ValueError(f"weights {tuple(weights.shape)} do not match the loss's vertices {per_element.shape[1]}")
    w = weights.to(per_element.dtype)
    return (per_element * w).sum() / (w.sum() * per_element.shape[0]).clamp_min(1e-12)
