"""Backbone adaptation vs the frozen backbone: the same memory encoding model trained on cached
tokens (the reference) and with LoRA and / or AdaLN-zero in the loop, on the same data, one run.

    python -m benchmarks.bench_adaptation                      # nsd-mini default preset, 12 epochs
    python -m benchmarks.bench_adaptation --runs lora4+adaln --epochs 4 --preset tiny

Each run trains the notebook-02 model (width 32, two 5x5 conv blocks, all vertices per step, MSE)
and is scored on the held-out trials (Algonauts test images). Prints each run's mean
noise-normalised score, its ratio to the cached run and the training time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

MODEL = {"width": 32, "conv_kernel": 5, "conv_blocks": 2, "mlp_hidden": 64, "memory_hidden": 64, "frame_dim": 16,
         "t1_dim": 16, "memory_out": 32, "behaviour_hidden": 32, "behaviour_out": 16, "time_dim": 8,
         "chunk_size": None}
RUNS = {"cached": {}, "lora4+adaln": dict(lora_rank=4, adaln_zero=True), "lora4": dict(lora_rank=4),
        "adaln": dict(adaln_zero=True)}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default", help="nsd-mini preset")
    ap.add_argument("--data-home", default=None,
                    help="where nsd-mini lives (default: $BRAINNET_DATA or ~/brainnet_data)")
    ap.add_argument("--runs", default="lora4+adaln", help=f"comma-separated, from {list(RUNS)[1:]}")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--backbone", default="brainnet-tiny")
    ap.add_argument("--out", default=None, help="run folders (default: a temporary folder)")
    args = ap.parse_args(argv)
    names = ["cached"] + [r for r in args.runs.split(",") if r and r != "cached"]
    unknown = [r for r in names if r not in RUNS]
    if unknown:
        ap.error(f"unknown runs {unknown}; choose from {list(RUNS)}")

    import logging

    from brainnet.data.mini.home import ensure_mini
    from brainnet.training.config import TrainConfig
    from brainnet.training.features import build_features
    from brainnet.training.fit import fit_encoder

    warnings.filterwarnings("ignore", module="pytorch_lightning")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    data = str(ensure_mini(args.data_home, preset=args.preset, progress=False).prepared)
    features = build_features(data, args.backbone, None, pool=8)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_adaptation-"))
    rows = []
    for name in names:
        cfg = TrainConfig(data_dir=data, backbone=args.backbone, model_options=MODEL, max_epochs=args.epochs, lr=3e-3,
                          loss="mse", vertices_per_step=None, patience=None, eval_split="heldout",
                          out_dir=str(out / name), resume=False, **RUNS[name])
        t0 = time.perf_counter()
        fit = fit_encoder(cfg, features=features)
        rows.append({"run": name, "score": fit.summary["eval_mean_score"], "r": fit.summary["eval_mean_r"],
                     "train_s": time.perf_counter() - t0})
        ref = rows[0]
        print(f"{name:12s} heldout score {rows[-1]['score']:6.2f}  r {rows[-1]['r']:.4f}  "
              f"x cached {rows[-1]['score'] / ref['score']:.3f}  {rows[-1]['train_s']:7.1f} s", flush=True)
    (out / "bench_adaptation.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
