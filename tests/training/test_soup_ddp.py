"""Validation r reduced across DDP processes; greedy soup of a run's checkpoints in fit_encoder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from brainnet.training.batches import EncodingDataset, SubjectBatchSampler
from brainnet.training.metrics import PearsonAccumulator, pearson_r
from brainnet.training.pearson_sync import reduce_accumulators

from _mini_cache import TINY_FEATURES, prepared_tiny, result_path, tiny_features, tiny_fit_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return prepared_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def features(root, tmp_path_factory):
    return tiny_features(tmp_path_factory)


# ---------------------------------------------------------------- sharding and reduction (no processes)
def test_validation_shards_hold_every_trial_once():
    """even=False: the ranks' batches together are all batches, none padded or repeated; counts differ
    by at most one (even=True, for training, gives equal counts and leaves the remainder out)."""
    groups = {"a": np.arange(0, 70), "b": np.arange(70, 101)}
    shards = [list(SubjectBatchSampler(groups, 16, shuffle=False, rank=r, world_size=3, even=False))
              for r in range(3)]
    assert [len(s) for s in shards] == [len(SubjectBatchSampler(groups, 16, False, rank=r, world_size=3, even=False))
                                        for r in range(3)] == [3, 2, 2]
    assert sorted(i for s in shards for b in s for i in b) == list(range(101))
    even = [list(SubjectBatchSampler(groups, 16, shuffle=False, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in even] == [2, 2, 2]


def _thread_gather(world: int):
    """gather functions for ``world`` threads standing in for processes (all_gather semantics)."""
    barrier, slots = threading.Barrier(world), [None] * world

    def make(rank):
        def gather(t):
            slots[rank] = t.clone()
            barrier.wait()
            out = torch.stack(slots)
            barrier.wait()
            return out
        return gather

    return [make(r) for r in range(world)]


def test_reduced_pearson_equals_one_process(rng):
    """3 "processes" with uneven shares (rank 2 sees no trial of subject b, large offsets in the data):
    every rank gets bit-identical per-vertex r, equal to r over all trials; a mean of per-rank r is not."""
    n_vertices = {"a": 40, "b": 25}
    data = {s: (rng.normal(5.0, 1.0, (60, v)), rng.normal(-3.0, 2.0, (60, v))) for s, v in n_vertices.items()}
    for x, y in data.values():
        y += 0.5 * x
    shares = {"a": [slice(0, 7), slice(7, 30), slice(30, 60)], "b": [slice(0, 41), slice(41, 60), None]}
    local = [{} for _ in range(3)]
    for s, (x, y) in data.items():
        for r, sl in enumerate(shares[s]):
            if sl is not None:
                local[r].setdefault(s, PearsonAccumulator()).update(torch.from_numpy(x[sl]), torch.from_numpy(y[sl]))
    out = [None] * 3
    gathers = _thread_gather(3)

    def run(r):
        out[r] = reduce_accumulators(local[r], ["a", "b"], gathers[r])

    threads = [threading.Thread(target=run, args=(r,)) for r in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for s, (x, y) in data.items():
        want = pearson_r(x, y)
        got = [o[s].compute().numpy() for o in out]
        assert all(o[s].n == 60 for o in out)
        np.testing.assert_allclose(got[0], want, rtol=0, atol=1e-12)
        assert all(np.array_equal(g, got[0]) for g in got[1:])
    per_rank_mean = np.mean([local[r]["a"].compute().numpy() for r in range(3)], axis=0)
    assert np.abs(per_rank_mean - pearson_r(*data["a"])).max() > 1e-3
    assert reduce_accumulators(local[2], ["a", "b"], None) == local[2]  # one process: as it is


# ---------------------------------------------------------------- 2 CPU processes
def test_ddp_validation_r_equals_one_process_evaluation(root, features, tmp_path_factory):
    """strategy="ddp", devices=2 on CPU (gloo), two subjects, max_steps below one epoch: the run
    validates at its last step (no val r otherwise), each rank scores half the validation batches
    (one subject each here), and both ranks log the r of a one-process evaluation of the saved weights."""
    from brainnet.training.run_setup import load_model
    from brainnet.training.soup import validation_scorer

    out = tmp_path_factory.mktemp("ddp")
    cfg = tiny_fit_config(root, out / "run", subjects=("subj01", "subj02"), max_steps=3, max_epochs=1, top_k=1,
                      strategy="ddp", devices=2, accelerator="cpu", eval_split="val")
    (out / "run").mkdir()
    cfg.save(out / "config.json")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("_ddp_fit.py")), str(out / "config.json"),
                           str(result_path(tmp_path_factory, TINY_FEATURES))],
                          env=env, cwd=str(out), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / "run" / f"rank{r}.json").read_text()) for r in range(2)]
    assert [h["step"] for h in ranks[0]["history"]] == [3]
    val_r = ranks[0]["history"][-1]["val_r"]
    assert ranks[1]["history"][-1]["val_r"] == val_r  # every rank logs the reduced value
    assert np.isfinite(ranks[0]["summary"]["best_val_r"])
    assert not any("sync_dist" in w or "never logged" in w for r in ranks for w in r["warnings"])
    model = load_model(out / "run" / "checkpoints" / "last.ckpt", root)
    val = EncodingDataset(root, ["subj01", "subj02"], "val", features, n_frames=8)
    assert validation_scorer(val)(model) == pytest.approx(val_r, abs=1e-5)


# ---------------------------------------------------------------- greedy soup in fit_encoder
def test_fit_soup_of_top_checkpoints(root, features, tmp_path):
    """soup_top_k=0, max_steps inside the first epoch: validated at its last step, no soup, the best
    checkpoint is evaluated. Resumed with more steps and soup_top_k=2: the soup of the 2 best
    checkpoints is scored on val (>= the best alone), saved, evaluated and recorded. Resumed again
    with nothing to train: the same soup file is reused, not recomputed."""
    from brainnet.training.config import TrainConfig
    from brainnet.training.fit import fit_encoder
    from brainnet.training.run_setup import load_model, model_state
    from brainnet.training.soup import validation_scorer

    with pytest.raises(ValueError, match="soup_top_k"):
        TrainConfig(top_k=2, soup_top_k=3)
    plain = fit_encoder(tiny_fit_config(root, tmp_path, max_steps=3, top_k=2), features=features)
    soup_path = tmp_path / "checkpoints" / "soup.ckpt"
    assert list(plain.history["step"]) == [3] and np.isfinite(plain.summary["best_val_r"])
    assert not plain.soup and not soup_path.exists() and "soup_val_r" not in plain.summary
    best = torch.load(plain.best_checkpoint, map_location="cpu", weights_only=False)
    for k, v in model_state(best).items():
        torch.testing.assert_close(plain.model.state_dict()[k], v)

    cfg = tiny_fit_config(root, tmp_path, max_steps=6, top_k=2, soup_top_k=2)
    souped = fit_encoder(cfg, features=features)
    assert souped.start_step == 3 and list(souped.history["step"]) == [3, 6]
    rec, summary = souped.soup, souped.summary
    names = [Path(p).name for p in souped.checkpoints["path"]]
    assert [c[0] for c in rec["candidates"]] == names and len(names) == 2
    assert rec["members"][0] == names[0] and set(rec["members"]) <= set(names)
    assert summary["soup_members"] == rec["members"] and summary["soup_size"] == len(rec["members"])
    assert summary["soup_val_r"] >= summary["soup_best_single_val_r"]
    assert summary["soup_best_single_val_r"] == pytest.approx(souped.checkpoints["val_r"][0], abs=1e-5)
    val = EncodingDataset(root, ["subj01"], "val", features, n_frames=8)
    saved = torch.load(soup_path, map_location="cpu", weights_only=True)
    assert saved["soup"] == rec
    assert validation_scorer(val)(load_model(soup_path, root)) == pytest.approx(rec["soup_val_r"], abs=1e-9)
    assert summary["eval_mean_r"] == pytest.approx(rec["soup_val_r"], abs=1e-6)  # eval_split="val" here

    stamp = soup_path.stat().st_mtime_ns
    again = fit_encoder(cfg, features=features)
    assert again.start_step == again.global_step == 6
    assert soup_path.stat().st_mtime_ns == stamp and again.soup == rec
    assert again.summary["eval_mean_r"] == pytest.approx(summary["eval_mean_r"], abs=1e-9)
