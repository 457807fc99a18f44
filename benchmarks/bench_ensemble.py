"""Ensemble members per hour: batched (one MemEnsemble run per partition) vs one run per member, and the
frozen neck's speed-up, on nsd-mini (CPU).

    python benchmarks/bench_ensemble.py --preset tiny --groups 9 --epochs 2 --threads 1

Every variant trains the same members (one random partition into ``--groups`` groups, subj01) through
``run_ensemble`` (runner "local", one shared FeatureSet) after one whole-brain model (stage 1, trained
once and shared by the variants: it is the frozen neck's source). Printed: wall time and members/hour of

* ``one-at-a-time``: one fit_encoder run per member (``EnsembleConfig(batched=False)``);
* ``batched``: one run of all members (``batched=True``);
* ``batched+frozen-neck``: the same with the whole-brain model's retina mapper and layer selector frozen;

and the ratios batched / one-at-a-time and frozen / batched, for whole runs (what a recipe costs: steps,
validation, soup, scoring) and for training steps alone (forward + backward + optimizer step of one batch).

Both ways do the same work: the same members, epochs, batches, validations, kept checkpoints and
per-member soups (each member souped by its own validation r in both), and each run is scored once.
Times are CPU seconds of the process (all threads; ``time.process_time``) and wall seconds: on a shared
machine wall time swings with other load (runs of one variant follow those of the other minutes later),
CPU time much less so; the ratios are printed for both. Use ``--threads 1`` on a loaded machine (idle
OpenMP threads spin and count as CPU time).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path


def _step_time(run_dir: Path, features, n: int = 10) -> float:
    """CPU seconds per training step (forward + backward + AdamW step of one batch) of a run's model."""
    import torch

    from brainnet.training.batches import EncodingDataset, make_loader
    from brainnet.training.config import TrainConfig
    from brainnet.training.ensemble import soup_or_best
    from brainnet.training.fit import _frames
    from brainnet.training.run_setup import load_model

    tc = TrainConfig.load(run_dir / "config.json")
    model = load_model(soup_or_best(run_dir), tc.data_dir).train()
    ds = EncodingDataset(tc.data_dir, list(tc.subjects), "train", features, _frames(tc))
    batch = next(iter(make_loader(ds, tc.batch_size)))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        model(batch).pow(2).mean().backward()
        opt.step()

    step()
    start = time.process_time()
    for _ in range(n):
        step()
    return (time.process_time() - start) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="nsd-mini preset")
    parser.add_argument("--groups", type=int, default=9,
                        help="members (groups of one random partition; 9 as in the seed's partitions)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--work", default="", help="work folder (default: a temporary one, removed)")
    args = parser.parse_args(argv)

    import torch

    from brainnet.data import ensure_mini
    from brainnet.training.config import TrainConfig
    from brainnet.training.ensemble import EnsembleConfig, run_ensemble
    from brainnet.training.features import build_features, resolve_backbone

    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_ensemble_"))
    try:
        data = ensure_mini(work / "mini", preset=args.preset, progress=False).prepared
        features = build_features(data, resolve_backbone("brainnet-tiny", image_size=32), pool=4, num_workers=0)
        model = dict(width=16, conv_blocks=1, mlp_hidden=32, memory_hidden=32, frame_dim=8, t1_dim=8,
                     memory_out=16, behaviour_hidden=16, behaviour_out=8, time_dim=4, n_memory_frames=8)
        train = TrainConfig(data_dir=str(data), subjects=("subj01",), model_options=model, max_epochs=args.epochs,
                            batch_size=64, warmup_steps=2, patience=None, top_k=2, eval_split="val", lr=2e-3)
        base = dict(atlas=False, clusters=(), n_random=1, random_k=args.groups, whole_seeds=(0,), runner="local")
        variants = {"one-at-a-time": dict(batched=False), "batched": dict(batched=True),
                    "batched+frozen-neck": dict(batched=True, frozen_neck=True)}
        first = None
        rows = {}
        for name, changes in variants.items():
            out = work / name
            if first is not None:  # share stage 1 (the whole-brain model) and the partition
                out.mkdir(parents=True)
                (out / "whole").symlink_to(first / "whole", target_is_directory=True)
            run = run_ensemble(train, EnsembleConfig(**base, **changes), out, features)
            first = first or out
            members = run.runs[run.runs["stage"] == 2]
            wall, cpu = float(members["wall_s"].sum()), float(members["cpu_s"].sum())
            step = sum(_step_time(Path(d), features) for d in members["out_dir"])
            rows[name] = (cpu, wall, step)
            print(f"{name:22s} runs {len(members):2d}  members {args.groups}  cpu {cpu:7.1f} s  wall {wall:7.1f} s  "
                  f"members/hour (cpu) {3600 * args.groups / cpu:8.1f}  train step (all members, cpu) "
                  f"{1000 * step:6.1f} ms")
        one, bat, neck = rows["one-at-a-time"], rows["batched"], rows["batched+frozen-neck"]
        print(f"batched / one-at-a-time, members per hour: {one[0] / bat[0]:.2f}x (runs, cpu), "
              f"{one[1] / bat[1]:.2f}x (runs, wall), {one[2] / bat[2]:.2f}x (training steps)")
        print(f"frozen neck speed-up over batched: {bat[0] / neck[0]:.2f}x (runs, cpu), "
              f"{bat[1] / neck[1]:.2f}x (runs, wall), {bat[2] / neck[2]:.2f}x (training steps)")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
