"""Train brainnet-tiny (the offline default backbone) on synthetic scenes and ship its weights.

Task: for scenes from :func:`brainnet.data.mini.scenes.draw_scene`, predict which of the four
categories (faces, bodies, places, words) are present (multi-label) and a coarse 4x4 map of where
each category is (coverage per cell, :func:`brainnet.data.mini.scenes.category_maps`). The heads are
thrown away; the backbone's state_dict is saved in fp16 to brainnet/backbones/weights/ with a JSON
record (command, data, seeds, steps, wall time, held-out metrics measured WITH the saved fp16
weights).

Run from the repository root:

    python -m scripts.train_default_backbone            # defaults: ~10 min on 1 CPU thread
    python -m scripts.train_default_backbone --steps 50 --n-train 512 --out /tmp/tiny   # smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from brainnet.backbones.base import IMAGENET_MEAN, IMAGENET_STD
from brainnet.backbones.tiny import TINY_INPUT_SIZE, TINY_WIDTHS, WEIGHTS_DIR, TinyCNN
from brainnet.data.mini.scenes import CATEGORIES, category_maps, draw_scene

MAP_GRID = 4


@dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in the JSON)."""

    n_train: int = 12000
    n_val: int = 2000
    size: int = TINY_INPUT_SIZE
    data_seed: int = 0
    val_seed: int = 10_000
    seed: int = 0
    steps: int = 450
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    map_weight: float = 1.0
    threads: int = 1
    out: str = os.path.relpath(WEIGHTS_DIR)


def make_scenes(n: int, size: int, seed: int, desc: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n scenes: images uint8 [n, size, size, 3], presence float32 [n, 4], maps float32 [n, 4, G, G]."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.uint8)
    presence = np.zeros((n, len(CATEGORIES)), np.float32)
    maps = np.empty((n, len(CATEGORIES), MAP_GRID, MAP_GRID), np.float32)
    for i in tqdm(range(n), desc=desc, mininterval=2.0):
        img, objs = draw_scene(rng, size)
        images[i] = img
        for o in objs:
            presence[i, o.category] = 1.0
        maps[i] = category_maps(objs, MAP_GRID)
    return images, presence, maps


class Heads(nn.Module):
    """Presence logits [B, 4] from pooled stages 3+4; map logits [B, 4, 4, 4] from stage 4."""

    def __init__(self):
        super().__init__()
        self.presence = nn.Linear(TINY_WIDTHS[2] + TINY_WIDTHS[3], len(CATEGORIES))
        self.where = nn.Conv2d(TINY_WIDTHS[3], len(CATEGORIES), 1)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.cat([feats[2].mean((2, 3)), feats[3].mean((2, 3))], 1)
        return self.presence(pooled), self.where(feats[3])


def to_input(images_u8: np.ndarray) -> torch.Tensor:
    """uint8 [B, S, S, 3] -> normalised float [B, 3, S, S]."""
    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.inference_mode()
def evaluate(net: TinyCNN, heads: Heads, images, presence, maps, batch: int = 256) -> dict:
    """Held-out metrics with chance levels beside them."""
    net.eval(), heads.eval()
    p_logits, m_logits = [], []
    for i in range(0, len(images), batch):
        p, m = heads(net(to_input(images[i : i + batch])))
        p_logits.append(p), m_logits.append(m)
    p = torch.cat(p_logits).numpy()
    m = torch.sigmoid(torch.cat(m_logits)).numpy()
    pred = p > 0
    truth = presence > 0.5
    label_acc = (pred == truth).mean(0)
    majority = np.maximum(truth.mean(0), 1 - truth.mean(0))
    exact = (pred == truth).all(1).mean()
    # most frequent label set as the exact-match chance level
    _, counts = np.unique(truth, axis=0, return_counts=True)
    exact_chance = counts.max() / len(truth)
    # localisation: argmax cell of a present category's predicted map lies on that category
    hits, chance = [], []
    for i, c in zip(*np.nonzero(truth)):
        cell = np.unravel_index(np.argmax(m[i, c]), m[i, c].shape)
        hits.append(maps[i, c][cell] > 0)
        chance.append((maps[i, c] > 0).mean())
    r = np.corrcoef(m.ravel(), maps.ravel())[0, 1]
    return {
        "presence_accuracy_per_category": dict(zip(CATEGORIES, label_acc.round(4).tolist())),
        "presence_accuracy_mean": round(float(label_acc.mean()), 4),
        "presence_chance_mean": round(float(majority.mean()), 4),
        "exact_set_accuracy": round(float(exact), 4),
        "exact_set_chance": round(float(exact_chance), 4),
        "localisation_accuracy": round(float(np.mean(hits)), 4),
        "localisation_chance": round(float(np.mean(chance)), 4),
        "map_pearson_r": round(float(r), 4),
    }


def train(cfg: TrainConfig, argv: list[str]) -> dict:
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    tr = make_scenes(cfg.n_train, cfg.size, cfg.data_seed, "train scenes")
    va = make_scenes(cfg.n_val, cfg.size, cfg.val_seed, "held-out scenes")
    t_data = time.time() - t0
    torch.manual_seed(cfg.seed)
    gen = np.random.default_rng(cfg.seed)
    net, heads = TinyCNN(), Heads()
    params = list(net.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    t1 = time.time()
    net.train(), heads.train()
    bar = tqdm(range(cfg.steps), desc="train", mininterval=5.0)
    for step in bar:
        idx = gen.integers(0, cfg.n_train, cfg.batch_size)
        x = to_input(tr[0][idx])
        if gen.random() < 0.5:  # mirror images and maps together (presence unchanged)
            x = x.flip(-1)
            tgt_maps = torch.from_numpy(tr[2][idx]).flip(-1)
        else:
            tgt_maps = torch.from_numpy(tr[2][idx])
        p, m = heads(net(x))
        presence_loss = F.binary_cross_entropy_with_logits(p, torch.from_numpy(tr[1][idx]))
        map_loss = F.binary_cross_entropy_with_logits(m, tgt_maps)
        loss = presence_loss + cfg.map_weight * map_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    t_train = time.time() - t1
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    wpath = out / "brainnet_tiny.pt"
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()}
    torch.save(sd, wpath)
    # held-out metrics with the shipped fp16 weights (round trip), random-init net as a control
    shipped = TinyCNN()
    shipped.load_state_dict(torch.load(wpath, weights_only=True))
    metrics = evaluate(shipped, heads, *va)
    record = {
        "backbone": "brainnet-tiny",
        "command": "python -m scripts.train_default_backbone " + " ".join(shlex.quote(a) for a in argv),
        "config": asdict(cfg),
        "data": {
            "generator": "brainnet.data.mini.scenes.draw_scene(rng, size) with rng = numpy.random.default_rng(seed)",
            "train": {"seed": cfg.data_seed, "count": cfg.n_train},
            "held_out": {"seed": cfg.val_seed, "count": cfg.n_val},
            "size": cfg.size,
            "targets": "presence of each category (multi-label) + category_maps(objects, grid=4) coverage",
            "augmentation": "horizontal mirror (maps mirrored too)",
        },
        "architecture": {"widths": list(TINY_WIDTHS), "input_size": cfg.size,
                         "params": int(sum(p.numel() for p in net.parameters()))},
        "steps": cfg.steps,
        "wall_time_s": {"data": round(t_data, 1), "train": round(t_train, 1), "total": round(time.time() - t0, 1)},
        "held_out_metrics": metrics,
        "weights_file": wpath.name,
        "weights_sha256": hashlib.sha256(wpath.read_bytes()).hexdigest(),
        "weights_dtype": "float16",
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "threads": cfg.threads},
    }
    (out / "brainnet_tiny.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = TrainConfig()
    for name, val in asdict(defaults).items():
        ap.add_argument("--" + name.replace("_", "-"), type=type(val), default=val)
    cfg = TrainConfig(**vars(ap.parse_args(argv)))
    record = train(cfg, argv)
    print(json.dumps(record["held_out_metrics"], indent=2))
    print(f"wall time {record['wall_time_s']}  -> {cfg.out}")
    return record


if __name__ == "__main__":
    main()
