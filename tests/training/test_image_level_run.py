"""Training on the image-level nsd-mini dataset (its Algonauts release alone, issue 15): FactorTopy recovers
the planted maps as on the trial-level dataset, the submission covers the release's test images, the memory
model with memory is refused before anything is written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from brainnet.analysis.brain_to_network import network_maps, run_summary, trained_clearer
from brainnet.analysis.planted import find_ground_truth
from brainnet.analysis.truth import vertex_truth
from brainnet.data import PreparedDataset
from brainnet.errors import MissingInputError
from brainnet.training.b2n_config import B2NConfig
from brainnet.training.fit import fit_encoder
from brainnet.training.network import network_features
from brainnet.training.submission import (
    algonauts_test_ids,
    challenge_columns,
    load_submission,
    predict_images,
    write_test_submission,
)

from tests._mini_cache import mini_tree, prepared_image_tiny, tiny_fit_config

SUBJECT = "subj01"
BACKBONES = ("brainnet-tiny", "brainnet-tiny-random")


def b2n_run(prepared, backbone: str, out) -> tuple:
    """FactorTopy on ``backbone`` with notebook 04's settings (``B2NConfig.preset("notebook")``): (fit, maps,
    features). On nsd-mini tiny (seed 0) the trial-level dataset gives RF r 0.91 / 0.90 and hierarchy rho 0.73
    (untrained twin -0.59); the image-level one 0.85 / 0.82 and 0.70 (-0.85)."""
    cfg = B2NConfig.preset("notebook").train_config(prepared, SUBJECT, backbone, out)
    features, _ = network_features(prepared, backbone, pool=cfg.pool)
    fit = fit_encoder(cfg, features=features)
    return fit, network_maps(fit.model, SUBJECT), features


@pytest.fixture(scope="module")
def image_level(tmp_path_factory):
    return prepared_image_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def runs(image_level, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("b2n-image")
    return {name: b2n_run(image_level, name, out / name) for name in BACKBONES}


def test_image_level_dataset_is_what_the_runs_see(image_level):
    ds = PreparedDataset(image_level)
    assert ds.level == "image" and not any(ds.has(k) for k in ("trial_order", "memory", "behaviour", "noise_ceiling"))
    assert find_ground_truth(ds) is not None  # nsd-mini's planted truth found through the manifest


def test_mem_with_memory_is_refused_before_any_run_folder(image_level, tmp_path):
    for ablation, missing in (("full", "memory"), ("no_memory_images", "behaviour")):
        out = tmp_path / ablation
        with pytest.raises(MissingInputError, match=f"no {missing}.*ablation='baseline'"):
            fit_encoder(tiny_fit_config(image_level, out, ablation=ablation))
        assert not out.exists()
    with pytest.raises(MissingInputError, match="'heldout'.*no fMRI"):
        fit_encoder(tiny_fit_config(image_level, tmp_path / "heldout", model="factortopy", ablation="full",
                                    eval_split="heldout", model_options={}))
    assert not (tmp_path / "heldout").exists()


def test_factortopy_recovers_planted_maps_and_hierarchy_order(runs, image_level, tmp_path_factory):
    truth = vertex_truth(mini_tree(tmp_path_factory).ground_truth, image_level, SUBJECT)
    rows = {name: run_summary(fit, maps, truth) for name, (fit, maps, _) in runs.items()}
    trained = rows["brainnet-tiny"]
    assert trained["rf_r_x"] >= 0.8 and trained["rf_r_y"] >= 0.8, rows
    assert trained_clearer(rows, *BACKBONES) is True, rows
    fit = runs["brainnet-tiny"][0]
    metrics = json.loads((fit.out_dir / "metrics.json").read_text())
    assert metrics["score_kind"] == "pearson_r" and metrics["eval_split"] == "test"
    assert not any("score" in k and k != "score_kind" for k in metrics), metrics
    numbers = [v for v in metrics.values() if isinstance(v, float)]
    assert np.isfinite(numbers).all() and metrics["eval_mean_r"] > 0.1 and metrics["eval_mean_r2"] > 0


def test_submission_has_the_release_test_images_and_vertices(runs, image_level, tmp_path, tmp_path_factory):
    fit, _, features = runs["brainnet-tiny"]
    release = mini_tree(tmp_path_factory).algonauts
    written = write_test_submission(fit.model, image_level, features, tmp_path / "submission")
    assert set(written) == {SUBJECT}
    ids = algonauts_test_ids(release, SUBJECT)
    masks = {h: np.load(release / SUBJECT / "roi_masks" / f"{h}.all-vertices_fsaverage_space.npy")
             for h in ("lh", "rh")}
    want = {"n_images": len(ids), **{h: int(np.count_nonzero(m)) for h, m in masks.items()}}
    back = load_submission(tmp_path / "submission", {SUBJECT: want})[SUBJECT]
    assert back["lh"].shape == (want["n_images"], want["lh"]) and np.isfinite(back["lh"]).all()
    # rows in the release's listing order: the prediction of the listing's last image is the last row
    last = predict_images(fit.model, image_level, SUBJECT, features, ids[-1:])
    cols = challenge_columns(image_level, SUBJECT)
    for h in ("lh", "rh"):
        np.testing.assert_allclose(back[h][-1], last[0, cols[h]], rtol=1e-5, atol=1e-6)
