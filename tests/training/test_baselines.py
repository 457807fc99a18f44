"""Ridge (per-vertex alpha) and PCA + linear baselines on the tiny nsd-mini."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from brainnet.analysis.truth import kind_mask, vertex_truth
from brainnet.training.baselines import fit_pca_linear, fit_ridge, pooled_features
from brainnet.training.batches import FeatureSet

from _mini_cache import mini_tree, prepared_tiny


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return prepared_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def truth(tmp_path_factory, root):
    return vertex_truth(mini_tree(tmp_path_factory).ground_truth, root, "subj01")


@pytest.fixture(scope="module")
def features(root):
    from brainnet.training.features import build_features, resolve_backbone

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_features(root, resolve_backbone("brainnet-tiny", image_size=32), pool=4, num_workers=0)


def test_pooled_features_layout():
    local = {"a": np.arange(2 * 3 * 4 * 4, dtype=np.float16).reshape(2, 3, 4, 4),
             "b": np.ones((2, 5, 2, 2), np.float16)}
    glob = {"a": np.full((2, 3), 7, np.float16), "b": np.zeros((2, 5), np.float16)}
    fs = FeatureSet(local, glob, torch.zeros(2, 4))
    x = pooled_features(fs, pool=2)
    assert x.shape == (2, 3 * 5 + 5 * 5)
    # first block: layer a pooled 2x2, channel 0, top-left cell = mean of rows 0-1, cols 0-1
    assert x[0, 0] == pytest.approx(np.mean([0, 1, 4, 5]))
    assert np.all(x[:, 12:15] == 7)
    with pytest.raises(ValueError):
        pooled_features(fs, pool=0)


def test_ridge_scores_visual_not_memory_vertices(root, features, truth):
    pytest.importorskip("himalaya")
    res = fit_ridge(root, "subj01", features, eval_split="heldout", pool=2, cv=3)
    v = len(truth)
    assert res.pred.shape == res.target.shape == (res.evaluation.summary["n_trials"], v)
    assert res.alphas.shape == (v,) and np.unique(res.alphas).size > 1  # one alpha per vertex
    r = res.evaluation.per_vertex["r"].to_numpy()
    visual, memory = kind_mask(truth, "visual"), kind_mask(truth, "memory")
    assert r[visual].mean() > 0.2
    assert r[visual].mean() > r[memory].mean() + 0.1  # memory vertices need past images, not this one
    assert res.evaluation.summary["identification"] > 5.0 / res.evaluation.summary["n_candidates"]
    assert {"atlas", "roi", "mean_r", "mean_score", "mean_nc"} <= set(res.evaluation.roi_table.columns)


def test_pca_linear_tutorial_recipe(root, features, truth):
    res = fit_pca_linear(root, "subj01", features, eval_split="heldout", n_components=100)
    assert res.info["n_components"] == min(100, res.info["n_train_images"])
    summary = res.evaluation.summary
    assert {"mean_r", "median_r", "mean_score", "median_score", "identification", "challenge_score"} <= set(summary)
    pv = res.evaluation.per_vertex
    r, visual = pv["r"].to_numpy(), kind_mask(truth, "visual")
    assert r[visual].mean() > 0.15
    # the challenge score: image-averaged responses (less noise) against an NC of <= 3 repeats
    assert pv["challenge_r"].to_numpy()[visual].mean() > r[visual].mean()
    assert (pv["challenge_nc"] <= pv["nc"] + 1e-6).all()  # equal when every scored image has 3 repeats
    assert summary["challenge_score"] == pytest.approx(pv["challenge_score"].mean())


def test_baseline_rejects_unknown_split(root, features):
    with pytest.raises(ValueError, match="unknown split"):
        fit_pca_linear(root, "subj01", features, eval_split="bogus")
