"""The ROI-model ensemble: partitions, the batched member model, the resumable recipe, the combination."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from brainnet.models import MemEnsemble, MemEnsembleConfig
from brainnet.training.ensemble import (
    ATLAS_GROUPS,
    EnsembleConfig,
    Partition,
    atlas_groups,
    combine_predictions,
    evaluate_ensemble,
    model_clusters,
    random_partitions,
    run_ensemble,
    subject_vertex_counts,
)

from _mini_cache import TINY_MODEL, prepared_tiny, shared_result, tiny_features, tiny_fit_config


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return prepared_tiny(tmp_path_factory)


def _covers_once(part: Partition, counts: dict) -> None:
    for s, v in counts.items():
        lab = part.labels[s]
        assert lab.shape == (v,)
        assert lab.min() >= 0 and lab.max() < part.k  # one group per vertex, every vertex in one


def test_partitions_cover_every_vertex_once(root, tmp_path):
    subjects = ("subj01", "subj02")
    counts = subject_vertex_counts(root, subjects)
    atlas = atlas_groups(root, subjects)
    assert atlas.group_names == ATLAS_GROUPS
    _covers_once(atlas, counts)
    from brainnet.data.prepared import PreparedDataset

    subj = PreparedDataset.open(root).subject("subj01")
    codes, names = subj.rois["streams"]
    early = list(names).index("early")
    assert np.all(atlas.labels["subj01"][np.asarray(codes) == early] == ATLAS_GROUPS.index("early"))
    assert np.all(atlas.labels["subj01"][np.asarray(codes) == 0] == ATLAS_GROUPS.index("RSC"))  # all in challenge
    parts = random_partitions(counts, 3, 4, seed=1)
    assert len({p.name for p in parts}) == 3
    for p in parts:
        _covers_once(p, counts)
        for s in counts:
            sizes = np.bincount(p.labels[s], minlength=4)
            assert sizes.max() - sizes.min() <= 1
    assert not np.array_equal(parts[0].labels["subj01"], parts[1].labels["subj01"])
    again = random_partitions(counts, 3, 4, seed=1)
    assert all(np.array_equal(a.labels["subj02"], b.labels["subj02"]) for a, b in zip(parts, again))
    back = Partition.load(parts[0].save(tmp_path / "random1.npz"))
    assert back.group_names == parts[0].group_names and np.array_equal(back.labels["subj01"], parts[0].labels["subj01"])


def test_model_clusters_recover_planted_groups(rng):
    directions = rng.normal(size=(3, 24))
    truth = {s: rng.integers(0, 3, v) for s, v in (("subj01", 400), ("subj02", 300))}
    # the same direction at any length (cosine), plus noise
    weights = {s: directions[t] * rng.uniform(0.5, 3.0, (t.size, 1)) + 0.15 * rng.normal(size=(t.size, 24))
               for s, t in truth.items()}
    part = model_clusters(weights, 3, n_kmeans=30, seed=0)
    assert part.k == 3
    _covers_once(part, {s: t.size for s, t in truth.items()})
    found = np.concatenate([part.labels[s] for s in truth])
    planted = np.concatenate(list(truth.values()))
    # one found group per planted group, and back
    pairs = {(int(a), int(b)) for a, b in zip(planted, found)}
    assert len(pairs) == 3 and len({a for a, _ in pairs}) == 3 and len({b for _, b in pairs}) == 3


def _batch(rng_seed: int = 0, b: int = 5):
    g = torch.Generator().manual_seed(rng_seed)
    return {"subject": "subj01", "local": [torch.randn(b, 8, 4, 4, generator=g) for _ in range(2)],
            "global": [torch.randn(b, 8, generator=g) for _ in range(2)],
            "memory": torch.randn(b, 4, 8, generator=g), "memory_valid": torch.ones(b, 4, dtype=torch.bool),
            "behaviour": torch.randn(b, 35, generator=g)}


def test_batched_members_equal_members_alone(rng, tmp_path):
    v = 120
    xyz = rng.normal(size=(v, 3))
    coords = {"subj01": xyz / np.linalg.norm(xyz, axis=1, keepdims=True)}
    hemi = {"subj01": (np.arange(v) % 2).astype(np.int64)}
    labels = rng.integers(0, 4, v)
    np.savez(tmp_path / "p.npz", subj01=labels)
    opts = {**TINY_MODEL, "in_channels": (8, 8), "layer_names": ("a", "b"), "memory_dim": 8, "n_memory_frames": 4,
            "conv_blocks": 1, "grid_size": 4}
    cfg = MemEnsembleConfig(**opts, partition=str(tmp_path / "p.npz"), groups=(3, 0, 2))  # group 1 left out
    stacked = MemEnsemble(cfg, coords, hemi).eval()
    batch = _batch()
    out = stacked(batch)
    assert out.shape == (5, v)
    assert torch.all(out[:, torch.from_numpy(labels == 1)] == 0)  # not covered: 0
    alone = []
    for m, g in enumerate(cfg.groups):
        single = MemEnsemble(dataclasses.replace(cfg, groups=(g,)), coords, hemi).eval()
        single.load_state_dict(single.state_dict() | stacked.member_state(m))
        pred = single(batch)
        sel = torch.from_numpy(labels == g)
        torch.testing.assert_close(pred[:, sel], out[:, sel], rtol=1e-5, atol=1e-6)
        assert torch.all(pred[:, ~sel] == 0)
        alone.append(single)
    # and back: members alone loaded into a fresh stack give the same outputs
    fresh = MemEnsemble(cfg, coords, hemi).eval()
    for m, single in enumerate(alone):
        fresh.load_member_state(m, single.state_dict())
    torch.testing.assert_close(fresh(batch), out)
    idx = torch.tensor([7, 3, 100])
    torch.testing.assert_close(stacked(batch, idx), out[:, idx])
    # the members' gradients stay apart: a loss on group 0's vertices moves member 1 (group 0) only
    stacked.train()
    stacked(batch)[:, torch.from_numpy(labels == 0)].sum().backward()
    grad = stacked.body.conv_heads[0].proj.weight.grad.flatten(1).abs().sum(1)
    assert grad[1] > 0 and grad[0] == 0 and grad[2] == 0


def test_combine_mean_and_validation_weighting():
    a = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    b = np.array([[5.0, 0.0, 9.0], [7.0, 0.0, 9.0]])
    cov_a, cov_b = np.array([True, True, False]), np.array([True, False, True])
    mean = combine_predictions([a, b], [cov_a, cov_b])
    np.testing.assert_allclose(mean, [[3.0, 2.0, 9.0], [5.0, 4.0, 9.0]])
    w = combine_predictions([a, b], [cov_a, cov_b], [np.array([0.3, 0.5, 0.0]), np.array([0.1, 0.9, -0.2])])
    # vertex 0: (0.3 a + 0.1 b) / 0.4; vertex 1: only a covers it; vertex 2: b's weight < 0 -> plain mean of b
    np.testing.assert_allclose(w[:, 0], (0.3 * a[:, 0] + 0.1 * b[:, 0]) / 0.4)
    np.testing.assert_allclose(w[:, 1:], mean[:, 1:])
    assert np.isnan(combine_predictions([a], [np.array([True, False, True])])[:, 1]).all()


@pytest.fixture(scope="module")
def reduced_run(root, tmp_path_factory):
    """A reduced recipe on tiny nsd-mini (subj01): one whole-brain model + 3 model-defined clusters (2 epochs,
    2 checkpoints kept: the clusters' members are souped each on its own)."""
    out = tmp_path_factory.mktemp("ensemble")
    train = tiny_fit_config(root, "", subjects=("subj01",), max_epochs=2, top_k=2, eval_split="heldout",
                            vertices_per_step=None)
    ens = EnsembleConfig.reduced(n_random=0, runner="local")
    features = tiny_features(tmp_path_factory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = run_ensemble(train, ens, out, features)
        scores = shared_result(tmp_path_factory, "ensemble-reduced-scores",
                               lambda: evaluate_ensemble(run, "heldout", features).summary)
    return train, ens, out, features, run, scores


def test_reduced_ensemble_beats_the_single_model(reduced_run):
    *_, run, scores = reduced_run
    assert list(run.runs["name"]) == ["whole-seed0", "clusters3-all"]
    assert run.runs["trained"].all()
    s = scores.set_index("model")["mean_score"]
    print(f"\nsingle {s['single']:.3f} mean {s['mean']:.3f} val_r {s['val_r']:.3f}")
    assert s["mean"] > s["single"] and s["val_r"] > s["single"], scores


def test_members_souped_each_by_its_own_validation_r(reduced_run):
    from brainnet.training.batches import EncodingDataset
    from brainnet.training.run_setup import load_model
    from brainnet.training.soup import average_states, load_state, member_scores

    train, _, out, features, run, _ = reduced_run
    ckpts = out / "members" / "clusters3" / "all" / "checkpoints"
    record = torch.load(ckpts / "soup.ckpt", weights_only=True)["soup"]
    assert len(record["candidates"]) == 2 and len(record["per_member"]) == 3
    model = load_model(ckpts / "soup.ckpt", train.data_dir)
    val = EncodingDataset(train.data_dir, ("subj01",), "val", features, TINY_MODEL["n_memory_frames"])
    got = member_scores(model, val)
    for m, pm in enumerate(record["per_member"]):
        assert pm["soup_score"] >= pm["best_single_score"]  # greedy: never below the member's best checkpoint
        assert got[m] == pytest.approx(pm["soup_score"], abs=1e-5)
        # member m holds the average of its own checkpoints' member-m weights, whatever the others chose
        parts = []
        for name in pm["checkpoints"]:
            model.load_state_dict(load_state(ckpts / name))
            parts.append(model.member_state(m))
        want = average_states(parts)
        soup = load_model(ckpts / "soup.ckpt", train.data_dir).member_state(m)
        for k, v in want.items():
            torch.testing.assert_close(soup[k], v)


def test_rerun_skips_finished_members(reduced_run):
    train, ens, out, features, run, _ = reduced_run
    again = run_ensemble(train, ens, out, features)
    assert not again.runs["trained"].any()
    np.testing.assert_allclose(again.runs["wall_s"], run.runs["wall_s"])
    assert np.array_equal(again.partitions["clusters3"].labels["subj01"], run.partitions["clusters3"].labels["subj01"])
