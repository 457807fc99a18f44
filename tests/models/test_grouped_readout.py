"""The fast paths of the memory model's sampling + readout give the numbers and gradients of the plain
formula: ``readout(sample_mixed_maps(maps) + mixed globals)`` over (B, n, D) features."""

from __future__ import annotations

import pytest
import torch

from brainnet.models.mem import MemConfig, MemModel, grouped_readout, vertex_features
from brainnet.models.readout import VertexReadout
from brainnet.models.tokens import bilinear_taps, bilinear_weights, mixed_map_groups, sample_mixed_maps

B, L, D, D_S, N = 3, 2, 5, 4, 60


@pytest.mark.parametrize("h, w", [(5, 7), (1, 4)])
@pytest.mark.parametrize("align_corners, padding", [(False, "border"), (True, "zeros")])
def test_bilinear_taps_are_the_nonzero_weights(h, w, align_corners, padding):
    """Scattered into a dense (n, h * w) row, the taps equal bilinear_weights, in values and in the
    gradients to the positions (points outside [-1, 1] and a one-cell axis included); every point's
    base is its block's first cell."""
    g = torch.Generator().manual_seed(1)
    xy = (torch.rand(80, 2, generator=g, dtype=torch.float64) * 2.6 - 1.3).requires_grad_()
    base, cells, weights = bilinear_taps(xy, h, w, align_corners, padding)
    dense = torch.zeros(80, h * w, dtype=torch.float64).scatter_add(1, cells, weights)
    ref = bilinear_weights(xy, h, w, align_corners, padding)
    torch.testing.assert_close(dense, ref)
    assert torch.equal(base, cells[:, 0]) and cells.shape[1] == min(h, 2) * min(w, 2)
    up = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    (grad_taps,) = torch.autograd.grad((dense * up).sum(), xy)
    (grad_ref,) = torch.autograd.grad((ref * up).sum(), xy)
    torch.testing.assert_close(grad_taps, grad_ref)


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()

    xy = (torch.rand(N, 2, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    return {"maps": r(B, L * D, 4, 4), "glob": r(B, L, D), "xy": xy,
            "lw": torch.softmax(torch.randn(N, L, generator=g, dtype=torch.float64), -1).requires_grad_(),
            "shared": r(B, D_S)}


def _readout() -> VertexReadout:
    torch.manual_seed(0)
    return VertexReadout(N + 10, D + D_S).double()


def _grads(out: torch.Tensor, leaves: list[torch.Tensor]) -> list[torch.Tensor]:
    up = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    return list(torch.autograd.grad((out * up).sum(), leaves))


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_grouped_and_vertex_major_paths_equal_the_plain_formula(chunk_size):
    """Over a vertex subset in shuffled order with repeats, CPU groups cut at chunk_size: the grouped
    readout (no (n, B, D) features) and the vertex-major features + readout equal the (B, n, D) formula,
    values and gradients to maps, globals, positions, layer weights, shared features and readout."""
    x = _inputs()
    readout = _readout()
    idx = torch.randperm(N + 10, generator=torch.Generator().manual_seed(2))[:N]
    idx[:3] = idx[3]  # a vertex read several times
    leaves = [x["maps"], x["glob"], x["xy"], x["lw"], x["shared"], readout.weight, readout.bias]
    feat = sample_mixed_maps(x["maps"], x["xy"], x["lw"]) + torch.einsum("bld,nl->bnd", x["glob"], x["lw"])
    plain = readout(feat, idx, shared=x["shared"])
    major = readout(vertex_features(x["maps"], x["glob"], x["xy"], x["lw"]), idx, shared=x["shared"],
                    vertex_major=True)
    grouped = grouped_readout(x["maps"], x["glob"], x["xy"], x["lw"], idx, readout, x["shared"], chunk_size)
    expect = _grads(plain, leaves)
    for out in (major, grouped):
        torch.testing.assert_close(out, plain)
        for a, b in zip(_grads(out, leaves), expect):
            torch.testing.assert_close(a, b)
    order, rows, mix = mixed_map_groups(x["maps"], x["xy"], x["lw"], x["glob"], chunk_size)
    assert sorted(order.tolist()) == list(range(N)) and sum(m.shape[0] for m in mix) == N
    assert chunk_size is None or max(m.shape[0] for m in mix) <= chunk_size
    assert all(r.shape == (4 * L + L, B, D) for r in rows)  # 2 x 2 cells per layer, one global per layer


def test_mem_model_cpu_forward_is_the_dense_path():
    """MemModel on the CPU (grouped path) predicts what its dense path (the one CUDA runs) predicts."""
    cfg = MemConfig(in_channels=(6, 8), memory_dim=5, width=4, conv_blocks=1, mlp_hidden=8, n_freqs=4,
                    memory_hidden=8, frame_dim=4, t1_dim=4, memory_out=4, behaviour_hidden=8, behaviour_out=4,
                    time_dim=4, n_memory_frames=3, chunk_size=16, selector_init="random", dropout=0.0)
    g = torch.Generator().manual_seed(0)
    coords = torch.nn.functional.normalize(torch.randn(50, 3, generator=g), dim=1) * 100
    torch.manual_seed(0)
    model = MemModel(cfg, {"s": coords}, {"s": torch.arange(50) % 2}).eval()
    batch = {"subject": "s", "local": [torch.randn(2, 6, 8, 8), torch.randn(2, 8, 8, 8)],
             "global": [torch.randn(2, 6), torch.randn(2, 8)], "memory": torch.randn(2, 3, 5),
             "memory_valid": torch.ones(2, 3, dtype=torch.bool), "behaviour": torch.randn(2, 35)}
    with torch.no_grad():
        fast = model(batch)
        maps, glob = model.current_features(batch)
        pe = model.vertices.get("s")
        dense = model.readouts["s"](vertex_features(maps, glob, model.retina(pe), model.layer_selector(pe)), None,
                                    shared=model.shared_features(batch, "s"), vertex_major=True)
    assert len(torch.unique(torch.floor(model.positions("s") * 4), dim=0)) > 3  # vertices spread over cells
    torch.testing.assert_close(fast, dense)
