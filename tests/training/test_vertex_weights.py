"""Per-vertex loss weights from the EMA of validation improvement; distillation loss mixing."""

from __future__ import annotations

import pytest
import torch

from brainnet.training import TrainConfig
from brainnet.training.optim import distillation_loss, encoding_loss, teacher_share
from brainnet.training.vertex_weights import (
    VertexWeightState,
    minmax_weights,
    normalizes_by_weight_sum,
    update_ema,
    update_states,
    weighted_vertex_mean,
    weights_from_ema,
)


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


# ------------------------------------------------------- "val_ema_minmax" (the Memory Encoding Model's rule)
def _minmax_pass(states, r_a, r_b, epoch):
    rs = {"A": torch.tensor(r_a), "B": torch.tensor(r_b)}
    return update_states("val_ema_minmax", states, rs, decay=0.5, epoch=epoch, start_epoch=2)


def test_minmax_weights_by_hand():
    """EMA from 0 with r before the first pass = 0; weights 1 before epoch 2, then min-max over both subjects."""
    s = _minmax_pass({}, [0.2, 0.4], [0.1], epoch=0)  # gains = r: e = 0.5 * r
    assert torch.allclose(s["A"].ema, torch.tensor([0.1, 0.2])) and torch.allclose(s["B"].ema, torch.tensor([0.05]))
    assert s["A"].weights is None and s["B"].weights is None and s["A"].steps == 1
    s = _minmax_pass(s, [0.6, 0.4], [0.3], epoch=1)  # gains A (0.4, 0), B 0.2
    assert torch.allclose(s["A"].ema, torch.tensor([0.25, 0.1])) and torch.allclose(s["B"].ema, torch.tensor([0.125]))
    assert s["A"].weights is None  # epoch 1 < start epoch 2
    s = _minmax_pass(s, [0.6, 0.2], [float("nan")], epoch=2)  # gains A (0, -0.2), B (NaN -> r 0) -0.3
    assert torch.allclose(s["A"].ema, torch.tensor([0.125, -0.05]))
    assert torch.allclose(s["B"].ema, torch.tensor([-0.0875]))
    # joint min -0.0875 (subject B), max 0.125 (A): A's second vertex is not 0 as it would be alone
    assert torch.allclose(s["A"].weights, torch.tensor([1.0, 0.0375 / 0.2125]))
    assert torch.allclose(s["B"].weights, torch.tensor([0.0]))
    s = _minmax_pass(s, [0.6, 0.5], [0.0], epoch=3)  # gains A (0, 0.3), B 0: e A (0.0625, 0.125), B -0.04375
    assert torch.allclose(s["A"].weights, torch.tensor([0.10625 / 0.16875, 1.0])) and s["B"].weights.item() == 0.0
    assert s["A"].steps == 4 and s["A"].epoch == 3
    # how the weights enter the loss: mean of w * l over all elements (not divided by sum(w))
    pred, target, w = torch.zeros(4, 3), torch.tensor([[1.0, 2.0, 3.0]]).repeat(4, 1), torch.tensor([1.0, 0.5, 0.0])
    assert encoding_loss(pred, target, "mse", vertex_weights=w, by_weight_sum=False).item() == pytest.approx(1.0)
    assert encoding_loss(pred, target, "mse", vertex_weights=w).item() == pytest.approx(2.0)  # "val_ema"'s rule
    assert not normalizes_by_weight_sum("val_ema_minmax") and normalizes_by_weight_sum("val_ema")
    assert minmax_weights({"A": torch.full((3,), 0.2)})["A"].tolist() == [1.0, 1.0, 1.0]  # no spread: uniform


def test_weight_state_round_trip():
    s = _minmax_pass(_minmax_pass({}, [0.2, 0.4], [0.1], 1), [0.3, 0.1], [0.2], 2)["A"]
    back = VertexWeightState.from_dict(s.to_dict())
    assert back.steps == s.steps == 2 and back.epoch == 2 and torch.equal(back.ema, s.ema)
    assert torch.equal(back.last_r, s.last_r) and torch.equal(back.weights, s.weights)
    old = VertexWeightState.from_dict({"last_r": s.last_r, "ema": s.ema, "steps": 1})  # saved before weights/epoch
    assert old.weights is None and old.epoch == -1
    with pytest.raises(ValueError, match="mode"):
        update_states("none", {}, {}, 0.5, 0)


def test_val_ema_weights_are_set_at_validation():
    s = update_states("val_ema", {}, {"A": torch.tensor([0.1, 0.2])}, decay=0.5, epoch=0, mix=1.0)
    assert s["A"].weights is None  # first pass: r recorded only
    s = update_states("val_ema", s, {"A": torch.tensor([0.4, 0.2])}, decay=0.5, epoch=1, mix=1.0)
    assert torch.allclose(s["A"].weights, torch.tensor([2.0, 0.0]))


# ------------------------------------------------------------------------------------ distillation
def test_distillation_mixes_losses_or_targets_by_hand():
    pred, truth, teacher = torch.zeros(2, 2), torch.ones(2, 2), torch.full((2, 2), 3.0)  # mse: L(truth) 1, L(teacher) 9
    for epoch, a, want in [(0, 1.0, 9.0), (25, 0.75, 0.25 * 1 + 0.75 * 9), (100, 0.0, 1.0), (150, 0.0, 1.0)]:
        assert teacher_share(10_000, epoch, 0, 100) == pytest.approx(a)  # epochs, whatever the step
        assert distillation_loss(pred, truth, teacher, a, "losses", "mse").item() == pytest.approx(want)
    # targets: L(pred, 0.75 * 3 + 0.25 * 1) = 2.5 ** 2
    assert distillation_loss(pred, truth, teacher, 0.75, "targets", "mse").item() == pytest.approx(6.25)
    a = teacher_share(30, 7, 60, 0)  # steps
    assert a == pytest.approx(0.5) and teacher_share(30, 7, 0, 0) == 0.0
    w = torch.tensor([1.0, 0.0])  # count-normalised weights: L(truth) 0.5, L(teacher) 4.5
    got = distillation_loss(pred, truth, teacher, a, "losses", "mse", vertex_weights=w, by_weight_sum=False)
    assert got.item() == pytest.approx(0.5 * 0.5 + 0.5 * 4.5)
    with pytest.raises(ValueError, match="mix"):
        distillation_loss(pred, truth, teacher, a, "both", "mse")
    with pytest.raises(ValueError, match="at most one"):
        TrainConfig(handover_steps=5, handover_epochs=5)
    with pytest.raises(ValueError, match="distill_mix"):
        TrainConfig(distill_mix="both")
