"""Training-batch assembly alone: batches/s of fit_encoder's DataLoader over a prepared dataset.

The features are ViT-B/16-shaped (4 layers x 768 channels, 8 x 8 fp16 tokens, 768-d memory vectors;
constant values: only their size matters here) held in memory, as a cache held in RAM gives them;
the trials, behaviour and fMRI (a float16 memmap) are the prepared dataset's.

    python -m benchmarks.bench_loader DATA                       # e.g. a 6-session algonauts preset
    python -m benchmarks.bench_loader DATA --workers 2 --pin     # worker processes, pinned batches

Prints batches/s and samples/s (batch 32, shuffled, the first batch excluded).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from brainnet.training.batches import EncodingDataset, FeatureSet, make_loader


def vit_features(n_images: int, channels=(768,) * 4, memory_dim: int = 768, grid: int = 8) -> FeatureSet:
    """A FeatureSet of ``n_images`` rows with ViT-B-shaped tokens (fp16) and memory vectors (float32)."""
    local = {str(i): np.ones((n_images, c, grid, grid), np.float16) for i, c in enumerate(channels)}
    glob = {str(i): np.ones((n_images, c), np.float16) for i, c in enumerate(channels)}
    return FeatureSet(local, glob, torch.ones(n_images, memory_dim), backbone="synthetic")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="prepared dataset folder")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--pin", action="store_true", help="pin_memory (what a CUDA run would use)")
    args = ap.parse_args(argv)
    from brainnet.data.prepared import PreparedDataset

    data = PreparedDataset(args.data)
    feats = vit_features(data.n_images)
    ds = EncodingDataset(data, [data.subjects[0]], "train", feats, n_frames=32)
    pin = {"pin_memory": True} if args.pin else {}
    loader = make_loader(ds, args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers, **pin)
    n, t0, vertices = 0, 0.0, 0
    for k, batch in enumerate(loader):
        if k == 0:
            t0, vertices = time.perf_counter(), int(batch["fmri"].shape[1])
            continue
        n += 1
        if n >= args.batches:
            break
    dt = time.perf_counter() - t0
    res = {"batches_per_s": n / dt, "samples_per_s": n * args.batch_size / dt, "workers": args.workers,
           "pin": args.pin, "vertices": vertices}
    print(f"{n} batches of {args.batch_size} ({res['vertices']} vertices, ViT-B-shaped tokens), workers "
          f"{args.workers}, pin {args.pin}: {res['batches_per_s']:.1f} batches/s, {res['samples_per_s']:.0f} samples/s")
    return res


if __name__ == "__main__":
    main()
