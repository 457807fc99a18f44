"""Per-vertex loss weights from the EMA of validation improvement."""

from __future__ import annotations

import pytest
import torch

from brainnet.training.optim import encoding_loss
from brainnet.training.vertex_weights import update_ema, weighted_vertex_mean, weights_from_ema


def test_still_improving_vertices_get_the_weight():
    """Vertices 0-9 keep improving, 10-19 stall after the first pass, 20-29 get worse."""
    state = None
    for step in range(10):
        r = torch.zeros(30)
        r[:10] = 0.1 * step
        r[10:20] = 0.3 if step else 0.0
        r[20:] = 0.5 - 0.05 * step
        state = update_ema(state, r, decay=0.7)
    w = weights_from_ema(state.ema, mix=0.5)
    assert state.steps == 9
    assert w.mean().item() == pytest.approx(1.0, abs=1e-6)
    assert (w[:10] > 1.0).all()
    assert (w[10:] < 1.0).all() and (w[10:] >= 0.5 - 1e-6).all()
    assert w[:10].min() > w[10:20].max()  # stalled ones decayed below the still-rising ones


def test_first_pass_and_no_improvement_give_uniform_weights():
    s = update_ema(None, torch.rand(7), 0.5)
    assert s.steps == 0 and torch.equal(weights_from_ema(s.ema, 0.5), torch.ones(7))
    s = update_ema(s, s.last_r - 0.1, 0.5)  # everything got worse
    assert torch.equal(weights_from_ema(s.ema, 0.9), torch.ones(7))
    with pytest.raises(ValueError, match="vertices"):
        update_ema(s, torch.rand(8), 0.5)
    with pytest.raises(ValueError, match="decay"):
        update_ema(s, torch.rand(7), 1.0)


def test_weighted_loss():
    pred, target = torch.zeros(4, 3), torch.tensor([[1.0, 2.0, 3.0]]).repeat(4, 1)
    assert encoding_loss(pred, target, "mse").item() == pytest.approx((1 + 4 + 9) / 3)
    w = torch.tensor([0.0, 0.0, 3.0])
    assert encoding_loss(pred, target, "mse", vertex_weights=w).item() == pytest.approx(9.0)
    assert weighted_vertex_mean(torch.ones(2, 3), torch.ones(3)).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="vertices"):
        encoding_loss(pred, target, "mse", vertex_weights=torch.ones(2))
