"""Per-vertex sampling of the token maps: brainnet's fused matmul vs grid_sample, one run.

What the memory encoding model (and FactorTopy) do for every vertex at every step: sample L
stacked layer maps (B, L * D, g, g) at the vertex's RetinaMapper position and mix the L samples with
the vertex's LayerSelector weights -> (B, n, D), forward and backward (gradients to the maps, the
positions and the layer weights).

* reference: ``F.grid_sample`` (bilinear, border padding) on the stacked maps, reshape to
  (B, n, L, D), then an einsum with the layer weights - the straightforward PyTorch way (and
  brainnet's own code before this change);
* brainnet: :func:`brainnet.models.tokens.sample_mixed_maps` - the bilinear tent weights times the
  layer weights as one (n, L * g * g) matrix, one matrix product, no (B, n, L, D) intermediate.

Both are checked to agree (values and gradients) before timing.

    python -m benchmarks.bench_sampling                          # nsd-mini scale, CPU
    python -m benchmarks.bench_sampling --vertices 25600 --width 192 --grid 16 --device cuda

Prints the median time per forward + backward of both and the ratio reference / brainnet.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from brainnet.models.tokens import sample_mixed_maps


def reference(maps: torch.Tensor, xy: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    b, n_layers = maps.shape[0], weights.shape[1]
    grid = xy[None, None].expand(b, 1, -1, 2)
    s = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, :, 0]
    s = s.transpose(1, 2).reshape(b, xy.shape[0], n_layers, -1)
    return torch.einsum("bnld,nl->bnd", s, weights)


def _inputs(args, device, dtype):
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(args.batch_size, args.layers * args.width, args.grid, args.grid, generator=g)
    xy = torch.rand(args.vertices, 2, generator=g) * 2 - 1
    w = torch.softmax(torch.randn(args.vertices, args.layers, generator=g), -1)
    return [t.to(device, dtype).requires_grad_() for t in (maps, xy, w)]


def _time(fn, inputs, device, repeats: int) -> float:
    up = torch.randn(fn(*inputs).shape, device=device, dtype=inputs[0].dtype)
    times = []
    for i in range(repeats + 2):
        for t in inputs:
            t.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        (fn(*inputs) * up).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # 2 warm-up rounds
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vertices", type=int, default=2476, help="vertices per step (nsd-mini subj01: 2476)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=32, help="channels per layer after the conv heads")
    ap.add_argument("--grid", type=int, default=8, help="token grid size g")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.float32

    check = [t.detach().double().requires_grad_() for t in _inputs(args, device, dtype)]
    ref_check = [t.detach().clone().requires_grad_() for t in check]
    ours, ref = sample_mixed_maps(*check), reference(*ref_check)
    torch.testing.assert_close(ours, ref)
    up = torch.randn_like(ours)
    (ours * up).sum().backward()
    (ref * up).sum().backward()
    for a, b in zip(check, ref_check):
        torch.testing.assert_close(a.grad, b.grad)

    inputs = _inputs(args, device, dtype)
    t_ref = _time(reference, inputs, device, args.repeats)
    t_ours = _time(sample_mixed_maps, inputs, device, args.repeats)
    out = {"device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
           "threads": torch.get_num_threads(), "vertices": args.vertices, "batch_size": args.batch_size,
           "layers": args.layers, "width": args.width, "grid": args.grid,
           "reference_ms": 1e3 * t_ref, "brainnet_ms": 1e3 * t_ours, "ratio": t_ref / t_ours}
    print(f"sample + mix, forward + backward, B={args.batch_size} n={args.vertices} L={args.layers} "
          f"D={args.width} grid={args.grid}x{args.grid} on {out['device']} ({out['threads']} threads)")
    print(f"  reference grid_sample + einsum : {out['reference_ms']:8.2f} ms")
    print(f"  brainnet sample_mixed_maps     : {out['brainnet_ms']:8.2f} ms")
    print(f"  ratio (reference / brainnet)   : {out['ratio']:.2f}x   (values and gradients agree)")
    return out


if __name__ == "__main__":
    main()
