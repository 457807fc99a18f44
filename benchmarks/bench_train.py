"""Training throughput with cached tokens vs the backbone in the loop, same data, one run.

Both paths train the same memory encoding model (small settings) for the same number of steps on
the same random batches of the same images. "uncached" runs the frozen backbone (inference mode)
on each batch's current images, pools the maps to 8x8 and casts to fp16 exactly as the cache
does; "cached" looks the tokens up in a filled :class:`brainnet.cache.TokenCache`. Memory-image
vectors are looked up in both (computing them in the loop would cost 32 more forwards per trial).

    python -m benchmarks.bench_train                        # ViT-B/16 (random weights), CPU
    python -m benchmarks.bench_train --steps 20 --batch-size 16 --threads 2
    python -m benchmarks.bench_train --adapted              # + LoRA / AdaLN-zero in the loop
    python -m benchmarks.bench_train --scale algonauts --steps 5 --profile

``--scale algonauts`` times the training step alone at nsd-mini's algonauts scale instead: MemModel
at the seed's width (192) on 40,448 vertices, all of them every step, synthetic cached-token batches
of 32 with EncodingDataset's keys, shapes and dtypes (the GPU check's ``train_step`` stage,
``benchmarks/device_stages.py``, on this machine's device). It prints steps/s and the peak RSS;
``--profile`` adds the top ops by self CPU time of one profiled step (torch.profiler).

``--adapted`` adds a third path: the backbone in the loop with LoRA (rank 4) and AdaLN-zero
(:class:`brainnet.models.BackboneInLoop`), backpropagating through the backbone into the adapters.

Prints samples/s of both, their ratio and the device; also the one-off fill cost and after how
many epochs over the images the cache has paid for itself.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F

from brainnet.backbones import create_backbone
from brainnet.cache import TokenCache
from brainnet.models import AdaptConfig, BackboneInLoop, MemConfig, MemModel

SMALL = dict(width=32, conv_blocks=1, mlp_hidden=64, memory_hidden=64, frame_dim=16, t1_dim=16, memory_out=32,
             behaviour_hidden=32, behaviour_out=16, time_dim=8, n_memory_frames=8, chunk_size=None)


def _sphere(n: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(size=(n, 3))
    return (100 * x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vit_base_patch16_224", help="timm model name (random weights)")
    ap.add_argument("--layers", default="2,5,8,11")
    ap.add_argument("--n-images", type=int, default=64)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=None, help="default 16 (--scale algonauts: 32)")
    ap.add_argument("--vertices", type=int, default=2000)
    ap.add_argument("--vertices-per-step", type=int, default=512)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--adapted", action="store_true", help="also time LoRA + AdaLN-zero training in the loop")
    ap.add_argument("--scale", choices=("small", "algonauts"), default="small",
                    help="algonauts: the bare MemModel step at 40,448 vertices (see above)")
    ap.add_argument("--profile", action="store_true", help="--scale algonauts: profile one step, print the top ops")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.scale == "algonauts":
        return algonauts_step(args)
    args.batch_size = args.batch_size or 16
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)

    layers = [int(x) for x in args.layers.split(",")]
    bb = create_backbone(f"timm:{args.model}", weights="random", layers=layers).to(device)
    size = bb.input_size
    images = rng.integers(0, 256, size=(args.n_images, size, size, 3), dtype=np.uint8)
    cache = TokenCache(bb, pool=8, device=device)
    t0 = time.perf_counter()
    cache.fill(images, batch_size=16, num_workers=0, progress=False, forward="main")
    fill_s = time.perf_counter() - t0
    local_all, glob_all = cache.get(range(args.n_images))
    names = list(local_all)
    memory = glob_all[names[-1]].float()
    memory = ((memory - memory.mean(0)) / memory.std(0).clamp_min(1e-6)).to(device)

    coords, hemi = {"s": _sphere(args.vertices, rng)}, {"s": (np.arange(args.vertices) % 2).astype(np.int64)}
    cfg = MemConfig(in_channels=tuple(bb.widths), layer_names=tuple(names), memory_dim=memory.shape[1], **SMALL)
    model = MemModel(cfg, coords, hemi).to(device)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    target = torch.randn(args.n_images, args.vertices, device=device)
    plan = [rng.choice(args.n_images, args.batch_size, replace=False) for _ in range(args.steps + 1)]
    mem_rows = [rng.integers(-1, args.n_images, size=(args.batch_size, cfg.n_memory_frames)) for _ in plan]
    beh = torch.randn(args.batch_size, 35, device=device)

    def tokens_uncached(rows):
        x = torch.from_numpy(images[rows]).permute(0, 3, 1, 2).to(device).float().div_(255.0)
        with torch.inference_mode():
            loc, glo = bb.get_tokens(x, layers=names)
            loc = {n: (F.adaptive_avg_pool2d(t, 8) if t.shape[-1] > 8 else t).half() for n, t in loc.items()}
            glo = {n: t.half() for n, t in glo.items()}
        return {n: t.clone() for n, t in loc.items()}, {n: t.clone() for n, t in glo.items()}

    def tokens_cached(rows):
        loc, glo = cache.get(rows.tolist())
        return {n: t.to(device) for n, t in loc.items()}, {n: t.to(device) for n, t in glo.items()}

    def pixels(rows):
        return {"pixels": torch.from_numpy(images[rows]).permute(0, 3, 1, 2).to(device)}

    def run(get_tokens, net: torch.nn.Module = model) -> float:
        model.load_state_dict(init)
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
        times = []
        for k, rows in enumerate(plan):
            t = time.perf_counter()
            inputs = get_tokens(rows)
            if isinstance(inputs, tuple):
                inputs = {"local": inputs[0], "global": inputs[1]}
            mr = torch.from_numpy(mem_rows[k]).to(device)
            valid = mr >= 0
            batch = {"subject": "s", **inputs, "memory": memory[mr.clamp(min=0)] * valid[..., None],
                     "memory_valid": valid, "behaviour": beh}
            idx = torch.randperm(args.vertices, device=device)[:args.vertices_per_step]
            loss = F.mse_loss(net(batch, idx), target[torch.from_numpy(rows).to(device)][:, idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if k > 0:  # step 0 warms up
                times.append(time.perf_counter() - t)
        return args.batch_size * len(times) / sum(times)

    cached = run(tokens_cached)
    uncached = run(tokens_uncached)
    ratio = cached / uncached
    adapted = None
    if args.adapted:
        torch.manual_seed(0)
        bb_adapted = create_backbone(f"timm:{args.model}", weights="random", layers=layers)
        net = BackboneInLoop(bb_adapted, model, AdaptConfig(lora_rank=4, adaln_zero=True, pool=8,
                                                            layers=tuple(names))).to(device)
        adapted = run(pixels, net)
    fill_per_image = fill_s / args.n_images
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"model {args.model} layers {names}, {args.n_images} images, batch {args.batch_size}, "
          f"{args.steps} timed steps, {args.vertices_per_step}/{args.vertices} vertices per step")
    print(f"uncached (backbone in the loop): {uncached:8.2f} samples/s")
    print(f"cached tokens:                   {cached:8.2f} samples/s")
    print(f"ratio cached / uncached: {ratio:.1f}x   device: {name}")
    if adapted is not None:
        print(f"LoRA + AdaLN-zero in the loop:   {adapted:8.2f} samples/s   "
              f"(cached / adapted: {cached / adapted:.1f}x)")
    print(f"one-off cache fill: {fill_per_image * 1000:.1f} ms/image; pays for itself after "
          f"{fill_per_image / max(1e-12, 1 / uncached - 1 / cached):.2f} epochs over the images")
    return {"cached": cached, "uncached": uncached, "ratio": ratio, "adapted": adapted, "device": name}


def algonauts_step(args, top: int = 5) -> dict:
    """Steps/s of the MemModel step at the algonauts scale (``--steps`` timed steps after a warm-up;
    batch ``--batch-size`` (default 32)), optionally the top ops of one profiled step (the second of two:
    the first creates the optimiser state)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also when run as benchmarks/bench_train.py
    from benchmarks.device_check import Plan
    from benchmarks.device_stages import step_setup, timed_steps

    batch = args.batch_size or 32
    plan = Plan(device=args.device, stages=(), batch_size=batch, steps=args.steps, precisions=("fp32",))
    device = torch.device(plan.device)
    cfg, coords, hemi, batches = step_setup(plan)
    torch.manual_seed(0)
    model = MemModel(cfg, coords, hemi).to(device).train()
    dt, losses = timed_steps(model, batches, plan.steps, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    res = {"steps_per_s": plan.steps / dt, "s_per_step": dt / plan.steps, "loss_last": float(losses[-1]),
           "peak_rss_gb": rss_gb, "device": name}
    print(f"MemModel width {cfg.width}, {plan.vertices} vertices (all each step), batch {batch}, "
          f"{plan.steps} timed steps on {name}")
    print(f"{res['steps_per_s']:.3f} steps/s ({res['s_per_step']:.3f} s/step, {batch / res['s_per_step']:.1f} "
          f"samples/s); last loss {res['loss_last']:.5f}; peak RSS {rss_gb:.2f} GB")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile, schedule

        with profile(activities=[ProfilerActivity.CPU], schedule=schedule(wait=0, warmup=1, active=1),
                     acc_events=True) as prof:
            timed_steps(model, batches, 1, device, on_step=prof.step)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
        print(f"one profiled step, top {top} ops by self CPU time:\n{table}")
        res["profile"] = table
    return res


if __name__ == "__main__":
    main()
