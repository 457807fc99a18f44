"""Token cache vs the reference approach, same images, same backbone, one run.

Reference (re-implemented here, as Brain Decodes Deep Nets cached tokens): one image at a time
(batch size 1) decoded and resized in the main process, the backbone under ``torch.no_grad``,
every layer's local map resized to 8x8, fp32 tensors in a Python dict keyed by the float sum of
the image tensor. brainnet: :class:`brainnet.cache.TokenCache` (batched DataLoader fill, workers,
inference mode, fp16 preallocated arrays, pooling on the fly).

    python -m benchmarks.bench_cache                       # ViT-B/16 (random weights), 48 images
    python -m benchmarks.bench_cache --model vit_small_patch16_224 --n-images 96
    python -m benchmarks.bench_cache --model brainnet-tiny --n-images 512

Prints fill throughput (images/s) of both and their ratio, bytes per cached image of both and
their ratio, and the device. On a shared CPU the numbers are noisy: use --repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from brainnet.backbones import create_backbone
from brainnet.cache import TokenCache


def reference_fill(backbone, images: np.ndarray, pool: int) -> dict:
    """The reference cache: batch size 1, fp32, dict keyed by the float sum of the image tensor."""
    store: dict[float, tuple[dict, dict]] = {}
    size = backbone.input_size
    device = next(backbone.parameters()).device
    for i in range(len(images)):
        img = Image.fromarray(images[i]).resize((size, size), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].to(device).float() / 255.0
        with torch.no_grad():
            local, glob = backbone.get_tokens(x)
            local = {k: F.interpolate(v, size=(pool, pool), mode="bilinear", align_corners=False) if v.shape[-1] > pool
                     else v for k, v in local.items()}
        store[float(x.sum())] = (
            {k: v[0].clone() for k, v in local.items()},
            {k: v[0].clone() for k, v in glob.items()},
        )
    return store


def reference_bytes(store: dict) -> int:
    """Tensor bytes + Python object overhead (tensor objects, dict entries, keys) of the reference store."""
    n = sys.getsizeof(store)
    for key, (local, glob) in store.items():
        n += sys.getsizeof(key) + sys.getsizeof(local) + sys.getsizeof(glob)
        for t in (*local.values(), *glob.values()):
            n += t.untyped_storage().nbytes() + sys.getsizeof(t)
    return n


def cache_bytes(cache: TokenCache) -> int:
    """Token arrays + the id index."""
    idx = sys.getsizeof(cache._index) + sys.getsizeof(cache._ids) + sum(sys.getsizeof(i) for i in cache._ids)
    return cache.nbytes + idx


def make_images(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth random colour images, uint8 [n, size, size, 3] (bilinear-upsampled noise)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        out[i] = np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="token cache vs reference (batch 1, fp32 dict)")
    ap.add_argument("--model", default="vit_base_patch16_224",
                    help="timm model name (random weights) or a brainnet backbone name")
    ap.add_argument("--n-images", type=int, default=48)
    ap.add_argument("--source-size", type=int, default=425, help="side of the stored images (NSD stimuli are 425 px)")
    ap.add_argument("--pool", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--forward", default="auto", choices=["auto", "main", "workers"])
    ap.add_argument("--threads", type=int, default=None, help="torch threads of this process (default: torch's own)")
    ap.add_argument("--repeats", type=int, default=1, help="alternate reference / cache runs; medians reported")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # a bare timm model name: its architecture with random initial weights (timing only, no download)
    name = args.model if args.model.startswith("brainnet") or ":" in args.model else f"timm:{args.model}-random"
    bb = create_backbone(name).to(args.device)
    images = make_images(args.n_images, args.source_size, seed=0)
    if args.device.startswith("cuda"):
        device = torch.cuda.get_device_name()
    else:
        device = f"cpu ({torch.get_num_threads()} torch threads, {args.num_workers} workers)"
    print(f"backbone {name}: {len(bb.layer_names)} layers, input {bb.input_size}px; {args.n_images} images "
          f"{args.source_size}px; pool {args.pool}; device {device}")
    with torch.no_grad():  # warm-up outside the timings
        bb.get_tokens(torch.rand(2, 3, bb.input_size, bb.input_size, device=args.device))

    t_ref, t_new = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        store = reference_fill(bb, images, args.pool)
        t_ref.append(time.perf_counter() - t0)
        cache = TokenCache(bb, pool=args.pool)
        t0 = time.perf_counter()
        cache.fill(images, batch_size=args.batch_size, num_workers=args.num_workers, forward=args.forward,
                   progress=False)
        t_new.append(time.perf_counter() - t0)

    # same numbers? (reference resizes with bilinear interpolation; compare the unpooled global tokens)
    first = next(iter(store.values()))
    _, glob = cache.get([0])
    err = max(float((glob[k][0].float() - first[1][k].cpu()).abs().max()) for k in glob)

    ips_ref = args.n_images / statistics.median(t_ref)
    ips_new = args.n_images / statistics.median(t_new)
    b_ref = reference_bytes(store) / args.n_images
    b_new = cache_bytes(cache) / args.n_images
    raw = cache.bytes_per_image
    best_ref, best_new = args.n_images / min(t_ref), args.n_images / min(t_new)
    print(f"fill throughput   reference {ips_ref:8.2f} img/s | brainnet {ips_new:8.2f} img/s | "
          f"ratio {ips_new / ips_ref:5.2f}x  (medians of {args.repeats})  [{device}]")
    if args.repeats > 1:
        print(f"  best runs       reference {best_ref:8.2f} img/s | brainnet {best_new:8.2f} img/s | "
              f"ratio {best_new / best_ref:5.2f}x")
    print(f"bytes per image   reference {b_ref:10.0f} | brainnet {b_new:10.0f} | ratio {b_new / b_ref:5.3f}x "
          f"(raw fp16 {raw} B, brainnet/raw {b_new / raw:5.3f})")
    print(f"max |global token difference| brainnet fp16 vs reference fp32: {err:.2e}")
    print(f"runs (s): reference {[round(t, 1) for t in t_ref]}, brainnet {[round(t, 1) for t in t_new]}")
    return {"ips_ref": ips_ref, "ips_new": ips_new, "bytes_ref": b_ref, "bytes_new": b_new, "raw": raw,
            "device": device}


if __name__ == "__main__":
    main()
