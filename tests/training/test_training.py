"""brainnet.training: batches, optimisation pieces, fit / resume, soup, distillation, submission."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from brainnet.training.batches import (
    EncodingDataset,
    FeatureSet,
    SubjectBatchSampler,
    SubjectTrials,
    trial_memory_index,
)
from brainnet.training.config import TrainConfig
from brainnet.training.optim import blend_targets, encoding_loss, param_groups, teacher_share, warmup_cosine

from _mini_cache import TINY_MODEL, mini_tree, prepared_tiny, tiny_features
from _mini_cache import tiny_fit_config as _fit_config


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return prepared_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def features(root, tmp_path_factory):
    return tiny_features(tmp_path_factory)


# ---------------------------------------------------------------- batches
def test_trial_memory_index_matches_brute_force(rng):
    n = 300
    session = np.repeat([1, 2], n // 2)
    run = np.tile(np.repeat([1, 2, 3], n // 6), 2)
    slot = np.concatenate([np.sort(rng.choice(75, n // 6, replace=False)) for _ in range(6)])
    idx = trial_memory_index({"session": session, "run": run, "slot": slot}, n_frames=33)
    where = {(s, r, t): i for i, (s, r, t) in enumerate(zip(session, run, slot))}
    for i in rng.choice(n, 40, replace=False):
        for k in range(33):
            expect = where.get((session[i], run[i], slot[i] - k), -1)
            assert idx[i, k] == expect


def test_trial_memory_index_agrees_with_prepared_memory_index(root):
    st = SubjectTrials.load(root, "subj01")
    valid = st.trial_memory >= 0
    assert np.array_equal(valid, st.memory_index >= 0)
    assert np.array_equal(st.image[st.trial_memory[valid]], st.memory_index[valid])


def test_dataset_batch_contents(root, features):
    ds = EncodingDataset(root, ["subj01"], "train", features, n_frames=8)
    st = ds.data["subj01"]
    batch = ds.__getitems__(list(range(0, 40, 3)))
    rows = batch["trial"].numpy()
    assert batch["subject"] == "subj01"
    assert batch["fmri"].shape == (len(rows), st.n_vertices)
    np.testing.assert_array_equal(batch["fmri"].numpy(), np.asarray(st.fmri[rows], np.float32))
    for name in features.layer_names:
        np.testing.assert_array_equal(batch["local"][name].numpy(), features.local[name][st.image[rows]])
    mi = st.memory_index[rows, 1:9]
    np.testing.assert_array_equal(batch["memory_valid"].numpy(), mi >= 0)
    ok = mi >= 0
    np.testing.assert_allclose(batch["memory"].numpy()[ok], features.memory.numpy()[mi[ok]])
    assert not batch["memory"].numpy()[~ok].any()
    tm = st.trial_memory[rows, 1:9]
    np.testing.assert_allclose(batch["memory_behaviour"].numpy()[tm >= 0], st.behaviour[tm[tm >= 0]])
    assert not batch["memory_behaviour"].numpy()[tm < 0].any()


def test_batches_hold_one_subject(root, features):
    ds = EncodingDataset(root, ["subj01", "subj02"], "train", features, n_frames=4)
    with pytest.raises(ValueError, match="one subject"):
        ds.__getitems__([0, len(ds) - 1])
    sampler = SubjectBatchSampler(ds.groups(), 50, shuffle=True, seed=3)
    seen = []
    for b in sampler:
        assert len(np.unique(ds.subject_index[b])) == 1
        seen += b
    assert sorted(seen) == list(range(len(ds)))
    shards = [list(SubjectBatchSampler(ds.groups(), 50, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1])
    flat = [tuple(b) for s in shards for b in s]
    assert len(set(flat)) == len(flat)


def test_memmap_features_stay_on_disk_and_match_ram(root, features, tmp_path):
    """storage="memmap": the FeatureSet holds read-only memmap views (not RAM copies), and the
    batches built from them equal those from the RAM features."""
    from brainnet.training.features import build_features, resolve_backbone

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mm = build_features(root, resolve_backbone("brainnet-tiny", image_size=32), pool=4, num_workers=0,
                            storage="memmap", cache_dir=tmp_path)
    for n in features.layer_names:
        assert isinstance(mm.local[n], np.memmap) and isinstance(mm.global_[n], np.memmap)
        assert not mm.local[n].flags.writeable
        assert str(tmp_path) in str(mm.local[n].filename)
        np.testing.assert_array_equal(mm.local[n], features.local[n])
        np.testing.assert_array_equal(mm.global_[n], features.global_[n])
    a = EncodingDataset(root, ["subj01"], "train", features, 8)
    b = EncodingDataset(root, ["subj01"], "train", mm, 8)
    ia, ib = a.__getitems__(list(range(5))), b.__getitems__(list(range(5)))
    for n in features.layer_names:
        torch.testing.assert_close(ia["local"][n], ib["local"][n])
    torch.testing.assert_close(ia["memory"], ib["memory"])


def test_feature_set_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="one row per image"):
        FeatureSet({"a": np.zeros((3, 2, 1, 1), np.float16)}, {"a": np.zeros((3, 2), np.float16)}, torch.zeros(4, 5))


# ---------------------------------------------------------------- optimisation pieces
def test_param_groups_split_readout_and_decay():
    from brainnet.models import MemConfig, MemModel

    coords = {"s1": np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)}
    model = MemModel(MemConfig(in_channels=(4, 8), memory_dim=6, **TINY_MODEL), coords, {"s1": np.zeros(20, int)})
    groups = {g["name"]: g for g in param_groups(model, 1e-3, 0.01, 3e-3)}
    assert groups["readout"]["lr"] == 3e-3 and groups["body"]["lr"] == 1e-3
    assert groups["body_nodecay"]["weight_decay"] == 0.0 and groups["body"]["weight_decay"] == 0.01
    n_params = sum(len(g["params"]) for g in groups.values())
    assert n_params == len(list(model.parameters()))
    readout_ids = {id(p) for n, p in model.named_parameters() if n.startswith("readouts.")}
    assert {id(p) for g in ("readout", "readout_nodecay") for p in groups[g]["params"]} == readout_ids
    assert all(p.ndim >= 2 for p in groups["body"]["params"])


def test_schedule_and_blend():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(100, 100, 10, 0.05) == pytest.approx(0.05)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    truth, teacher = torch.zeros(2, 3), torch.ones(2, 3)
    assert torch.allclose(blend_targets(truth, teacher, teacher_share(0, 0, 10, 0)), teacher)
    assert torch.allclose(blend_targets(truth, teacher, teacher_share(5, 0, 10, 0)), torch.full((2, 3), 0.5))
    assert torch.allclose(blend_targets(truth, teacher, teacher_share(20, 0, 10, 0)), truth)
    assert encoding_loss(torch.zeros(2, 2), torch.ones(2, 2), "mse").item() == pytest.approx(1.0)
    assert encoding_loss(torch.zeros(2, 2), torch.ones(2, 2), "smooth_l1", 0.5).item() == pytest.approx(0.75)
    with pytest.raises(ValueError):
        encoding_loss(torch.zeros(2, 2), torch.ones(2, 2), "l3")


def test_train_config_validation_and_round_trip(tmp_path):
    cfg = TrainConfig(data_dir="x", subjects=("subj01", "subj02"), model_options={"width": 8})
    assert TrainConfig.load(cfg.save(tmp_path / "c.json")) == cfg
    assert TrainConfig.from_dict({"subjects": [1]}).subjects == ("subj01",)
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(ValueError):
        TrainConfig(model="transformer")
    with pytest.raises(ValueError):
        TrainConfig(eval_split="bogus")


def test_fit_rejects_missing_dataset(tmp_path):
    from brainnet.training.fit import fit_encoder

    with pytest.raises(FileNotFoundError, match="prepared dataset"):
        fit_encoder(TrainConfig(data_dir=str(tmp_path), out_dir=str(tmp_path / "run")))


# ---------------------------------------------------------------- fit, resume, soup
@pytest.fixture(scope="module")
def first_fit(root, features, tmp_path_factory):
    from brainnet.training.fit import fit_encoder

    out = tmp_path_factory.mktemp("fit")
    return fit_encoder(_fit_config(root, out, max_epochs=3), features=features)


def test_fit_writes_run_folder(first_fit, features):
    out = first_fit.out_dir
    assert TrainConfig.load(out / "config.json") == first_fit.config
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == first_fit.global_step > 0
    assert metrics["backbone_weights"] == features.weights and features.weights.startswith(("shipped:", "random:"))
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert len(first_fit.checkpoints) == 3
    assert first_fit.best_checkpoint == first_fit.checkpoints["path"][0]
    assert len(first_fit.history) == 3 and np.isfinite(first_fit.history["val_r"]).all()
    ev = first_fit.evaluation["subj01"]
    assert len(ev.per_vertex) == ev.per_vertex["nc"].size and {"r", "score"} <= set(ev.per_vertex)
    assert {"atlas", "roi", "mean_score"} <= set(ev.roi_table.columns)


def test_resume_continues_from_the_saved_step(root, features, tmp_path):
    from brainnet.training.fit import fit_encoder

    first = fit_encoder(_fit_config(root, tmp_path, max_epochs=1), features=features)
    steps_per_epoch = first.global_step
    assert first.start_step == 0 and steps_per_epoch > 0
    second = fit_encoder(_fit_config(root, tmp_path, max_epochs=2), features=features)
    assert second.start_step == steps_per_epoch
    assert second.global_step == 2 * steps_per_epoch
    assert list(second.history["epoch"]) == [0, 1]


def test_vertex_weighting_state_is_checkpointed_and_resumed(root, features, tmp_path):
    """vertex_weighting="val_ema_minmax", start epoch 1: after 2 epochs the EMA has folded in both
    validations, the weights (set at epoch 1) span [0, 1], all saved in last.ckpt; a resumed run
    continues the EMA (steps 2 -> 3) instead of restarting."""
    from brainnet.training.fit import fit_encoder

    kw = dict(vertex_weighting="val_ema_minmax", vertex_weight_start_epoch=1)
    first = fit_encoder(_fit_config(root, tmp_path, max_epochs=2, **kw), features=features)
    ck = torch.load(first.out_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    state = ck["vertex_weight_state"]["subj01"]
    n_vertices = first.evaluation["subj01"].per_vertex.shape[0]
    assert state["steps"] == 2 and state["epoch"] == 1 and state["ema"].shape == (n_vertices,)
    assert torch.count_nonzero(state["ema"]) > 0
    assert state["weights"].min().item() == 0.0 and state["weights"].max().item() == 1.0
    second = fit_encoder(_fit_config(root, tmp_path, max_epochs=3, **kw), features=features)
    ck2 = torch.load(second.out_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck2["vertex_weight_state"]["subj01"]["steps"] == 3
    with pytest.raises(ValueError, match="vertex_weighting"):
        TrainConfig(vertex_weighting="loss")


def test_resume_refuses_a_folder_of_other_settings(first_fit, features):
    """A run folder trained with other model settings is not resumed into a different model: clear
    error naming the settings, the saved config left as it was; more epochs alone do resume."""
    from brainnet.training.fit import fit_encoder, run_key

    saved = (first_fit.out_dir / "config.json").read_text()
    changed = first_fit.config.replace(model_options={**first_fit.config.model_options, "width": 24})
    with pytest.raises(ValueError, match="model_options"):
        fit_encoder(changed, features=features)
    assert (first_fit.out_dir / "config.json").read_text() == saved
    assert run_key(changed) != run_key(first_fit.config)
    assert run_key(first_fit.config.replace(max_epochs=99)) == run_key(first_fit.config)


def test_trainable_runs_from_a_config_dict(root, tmp_path, features, monkeypatch):
    from brainnet.training import fit as fit_mod
    from brainnet.training import run_setup

    monkeypatch.setattr(run_setup, "build_features", lambda *a, **k: features)
    cfg = _fit_config(root, tmp_path / "trial", max_epochs=1).to_dict()
    summary = fit_mod.train_trial(cfg)
    assert summary["global_step"] > 0 and "eval_mean_r" in summary
    assert (tmp_path / "trial" / "metrics.json").is_file()


def test_soup_never_below_best_member(first_fit, root, features):
    from brainnet.training.fit import build_model, model_config
    from brainnet.training.soup import greedy_soup, load_state, validation_scorer

    val = EncodingDataset(root, ["subj01"], "val", features, n_frames=8)
    score = validation_scorer(val)
    model = build_model("mem", model_config(first_fit.config, features), root, ["subj01"])
    fresh = {k: v.clone() for k, v in model.state_dict().items()}  # untrained: a bad candidate
    ckpts = list(first_fit.checkpoints["path"]) + [fresh]
    result = greedy_soup(model, ckpts, score)
    best_alone = max(result.member_scores.values())
    assert result.score >= best_alone
    assert score(result.model) == pytest.approx(result.score, abs=1e-9)
    for step in result.steps[1:]:
        assert step["accepted"] == (step["soup_score_if_added"] > max(
            s["soup_score_if_added"] for s in result.steps[:result.steps.index(step)] if s["accepted"]))
    assert set(load_state(ckpts[0])) == set(model.state_dict())


# ---------------------------------------------------------------- distillation
def test_distillation_uses_teacher_targets(first_fit, root, features, tmp_path):
    from brainnet.training.distill import distill, ensemble_predictions, save_teacher

    train = EncodingDataset(root, ["subj01"], "train", features, n_frames=8)
    preds = ensemble_predictions([first_fit.model], train)
    st = train.data["subj01"]
    assert preds["subj01"].shape == (st.image.size, st.n_vertices)
    assert np.abs(preds["subj01"][train.trials]).sum() > 0
    outside = np.setdiff1d(np.arange(st.image.size), train.trials)
    assert not preds["subj01"][outside].any()
    path = save_teacher(tmp_path / "teacher.npz", preds)
    with_teacher = EncodingDataset(root, ["subj01"], "train", features, n_frames=8, teacher=dict(np.load(path)))
    b = with_teacher.__getitems__([0, 1, 2])
    np.testing.assert_allclose(b["teacher"].numpy(), preds["subj01"][b["trial"].numpy()])
    student = distill(_fit_config(root, tmp_path / "student", max_epochs=1, distill_mix="losses"), path,
                      handover_steps=5, features=features)
    assert student.config.teacher_path == str(path) and student.global_step > 0
    with pytest.raises(ValueError, match="teacher"):
        EncodingDataset(root, ["subj01"], "train", features, teacher={"subj01": np.zeros((3, 3))})


# ---------------------------------------------------------------- submission
class _ImageEcho(torch.nn.Module):
    """Predicts, for every vertex, the trial's image row plus 0.5 * vertex index (checks ordering)."""

    def __init__(self, n_vertices):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.n = n_vertices

    def forward(self, batch, vertex_idx=None):
        img = batch["image"].float()[:, None]
        return img + 0.5 * torch.arange(self.n, dtype=torch.float32)[None] + 0 * self.dummy


def test_submission_order_shapes_and_round_trip(root, features, tmp_path_factory, tmp_path):
    from brainnet.training.submission import (
        algonauts_test_ids,
        challenge_columns,
        image_rows,
        load_submission,
        predict_images,
        write_submission,
    )

    tree = mini_tree(tmp_path_factory)
    info = json.loads((root / "manifest.json").read_text())["subjects"]["subj01"]
    ids = algonauts_test_ids(tree.algonauts, "subj01")
    assert len(ids) == info["algonauts_images"]["test"]
    n_v = info["n_vertices"]
    pred = predict_images(_ImageEcho(n_v), root, "subj01", features, ids, n_frames=4)
    rows = image_rows(root, ids)
    np.testing.assert_allclose(pred[:, 0], rows)  # row k is the k-th listed image
    paths = write_submission({"subj01": pred}, root, tmp_path / "sub")
    cols = challenge_columns(root, "subj01")
    expected = {"subj01": {"n_images": len(ids), "lh": cols["lh"].size, "rh": cols["rh"].size}}
    back = load_submission(tmp_path / "sub", expected)
    assert back["subj01"]["lh"].dtype == np.float32
    assert cols["lh"].size + cols["rh"].size == info["n_challenge_vertices"]
    np.testing.assert_allclose(back["subj01"]["rh"][:, 0], rows + 0.5 * cols["rh"][0])
    assert paths["subj01"]["lh"].name == "lh_pred_test.npy"
    with pytest.raises(ValueError, match="expected"):
        load_submission(tmp_path / "sub", {"subj01": {"n_images": len(ids) + 1, "lh": 0, "rh": 0}})
    with pytest.raises(ValueError, match="NaN"):
        write_submission({"subj01": np.full((2, n_v), np.nan)}, root, tmp_path / "bad")
