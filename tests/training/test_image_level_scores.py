"""Downstream of a dataset without trial order, memory, behaviour or noise ceiling (issue 15), on hand-made
objects: which inputs a run reads, MissingInputError before work, scores falling back to Pearson r / r²."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from brainnet.data import PreparedDataset
from brainnet.errors import MissingInputError
from brainnet.models import ABLATIONS, ablation_config
from brainnet.plotting.training import plot_score_bars
from brainnet.training.config import TrainConfig
from brainnet.training.evaluate import SAMPLE_POINTS, SubjectMeta, evaluate_predictions
from brainnet.training.metrics import SCORE_NOISE_NORMALIZED, SCORE_PEARSON_R, explained_variance, pearson_r
from brainnet.training.report import ablation_table, name_rois, roi_score_table
from brainnet.training.run_setup import available_variants, check_inputs, config_inputs

IMAGE_LEVEL = {"trial_order": False, "memory": False, "behaviour": False, "noise_ceiling": False}


class _Dataset(PreparedDataset):
    """A PreparedDataset without files: only what check_inputs / available_variants read (has, root, level,
    subject(s).has_fmri)."""

    def __init__(self, inputs: dict[str, bool], level: str = "image"):
        self._inputs, self._level, self.root = inputs, level, "/data/alg-only"

    def has(self, name: str) -> bool:
        return self._inputs[name]

    @property
    def level(self) -> str:
        return self._level

    def subject(self, s):
        return SimpleNamespace(name="subj01", has_fmri=lambda split: self._level == "trial" or split not in
                               ("predict", "heldout"))


def test_each_ablation_declares_what_it_reads():
    want = {"full": {"memory", "behaviour"}, "no_time": {"memory", "behaviour"}, "no_answer": {"memory", "behaviour"},
            "no_memory_c": {"memory", "behaviour"}, "no_memory_images": {"behaviour"}, "baseline": set()}
    assert set(want) == set(ABLATIONS)
    for name, inputs in want.items():
        assert set(ablation_config(name).data_inputs) == inputs, name
        assert set(config_inputs(TrainConfig(ablation=name))) == inputs, name
    assert config_inputs(TrainConfig(model="factortopy")) == {}
    t1 = TrainConfig(ablation="baseline", lora_rank=2, t1_backbone="brainnet-tiny-random")
    assert set(config_inputs(t1)) == {"memory"} and "t1_backbone" in config_inputs(t1)["memory"]


def test_check_inputs_refuses_absent_inputs_and_unscored_splits():
    image = _Dataset(IMAGE_LEVEL)
    with pytest.raises(MissingInputError) as err:
        check_inputs(TrainConfig(ablation="full"), image)
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    for part in ("/data/alg-only", "memory", "behaviour", "ablation='baseline'", "--nsd-dir", "use_memory_images"):
        assert part in msg, (part, msg)
    with pytest.raises(MissingInputError, match="behaviour.*use_answer"):
        check_inputs(TrainConfig(ablation="no_memory_images"), image)
    check_inputs(TrainConfig(ablation="baseline"), image)  # image-only model: fine
    check_inputs(TrainConfig(model="factortopy"), image)
    for split in ("heldout", "predict"):
        with pytest.raises(MissingInputError, match=f"split '{split}'.*no fMRI.*'test'"):
            check_inputs(TrainConfig(model="factortopy", eval_split=split), image)
    trial = _Dataset(dict.fromkeys(IMAGE_LEVEL, True), level="trial")
    check_inputs(TrainConfig(ablation="full", eval_split="heldout"), trial)
    assert available_variants(image, ["full", "baseline", "no_answer"]) == (
        ["baseline"], {"full": ["memory", "behaviour"], "no_answer": ["memory", "behaviour"]})
    assert available_variants(trial, list(ABLATIONS)) == (list(ABLATIONS), {})


def _meta(rng, v=40, with_nc=True):
    labels = np.repeat([0, 1, 2, 2], v // 4)
    nc = rng.uniform(0.2, 0.9, v) if with_nc else None
    return SubjectMeta("subj01", nc, {"streams": (labels, ["Unknown", "early", "late"])}, np.repeat([0, 1], v // 2),
                       np.ones(v, bool))


def test_scores_fall_back_to_r_without_a_noise_ceiling(rng):
    n_img, v = 30, 40
    image = np.repeat(np.arange(n_img), 2)
    signal = rng.standard_normal((n_img, v))
    target = signal[image] + rng.standard_normal((image.size, v))
    pred = signal[image] * np.linspace(-0.5, 1.0, v) + 0.3 * rng.standard_normal((image.size, v))
    without = evaluate_predictions(pred, target, _meta(rng, with_nc=False), image)
    with_nc = evaluate_predictions(pred, target, _meta(rng), image)
    s = without.summary
    assert s["score_kind"] == SCORE_PEARSON_R and with_nc.summary["score_kind"] == SCORE_NOISE_NORMALIZED
    assert not any("score" in k and k != "score_kind" for k in s), s
    assert all(np.isfinite(x) for x in s.values() if not isinstance(x, str)), s
    r = pearson_r(pred, target)
    np.testing.assert_allclose(without.per_vertex["r"], r)
    np.testing.assert_allclose(without.per_vertex["r2"], np.where(r > 0, r, 0) ** 2)
    assert (r < 0).any() and s["mean_r2"] == pytest.approx(np.mean(np.clip(r, 0, None) ** 2))
    assert s["mean_r"] == pytest.approx(r.mean()) and s["mean_r"] == with_nc.summary["mean_r"]
    # image-averaged r equals the challenge score's r (the same number, without the NC division)
    np.testing.assert_allclose(without.per_vertex["challenge_r"], with_nc.per_vertex["challenge_r"])
    assert s["challenge_mean_r"] == pytest.approx(with_nc.summary["challenge_mean_r"])
    assert s["challenge_mean_r"] > s["mean_r"]  # averaging the two repeats removes noise
    assert {"score", "nc", "challenge_score"} <= set(with_nc.per_vertex) and "score" not in without.per_vertex
    assert list(without.roi_table.columns) == ["atlas", "roi", "n_vertices", "mean_r", "mean_r2"]
    assert {"mean_score", "mean_nc"} <= set(with_nc.roi_table.columns)
    np.testing.assert_allclose(explained_variance(np.array([-0.5, 0.0, 0.5, np.nan])), [0, 0, 0.25, 0])


def test_eval_result_keeps_a_sample_of_image_averaged_points(rng):
    n_img, v = 300, 8
    image = np.repeat(np.arange(n_img), 2)[::-1].copy()  # image ids out of order
    target = rng.standard_normal((image.size, v))
    pred = target + rng.standard_normal((image.size, v))
    ev = evaluate_predictions(pred, target, _meta(rng, v=v), image, n_candidates=10)
    assert ev.sample_pred.shape == ev.sample_target.shape == (SAMPLE_POINTS, v) and ev.sample_pred.dtype == np.float32
    # evenly spaced images, each the mean of its two repeats
    ids = np.unique(np.linspace(0, n_img - 1, SAMPLE_POINTS).round().astype(int))
    means = np.stack([target[image == i].mean(axis=0) for i in ids])
    np.testing.assert_allclose(ev.sample_target, means, rtol=1e-6)
    # without image ids: the trials themselves, at most SAMPLE_POINTS of them
    few = evaluate_predictions(pred[:50], target[:50], _meta(rng, v=v))
    np.testing.assert_allclose(few.sample_pred, pred[:50], rtol=1e-6)


def test_report_tables_and_bars_without_a_noise_ceiling(rng, tmp_path):
    v = 40
    meta = _meta(rng, v, with_nc=False)
    image = np.arange(20)
    target = rng.standard_normal((20, v))
    results = {name: evaluate_predictions(target + k * rng.standard_normal((20, v)), target, meta, image)
               for name, k in (("good", 0.5), ("bad", 3.0))}
    fits = {k: SimpleNamespace(evaluation={"subj01": ev}) for k, ev in results.items()}
    table = name_rois(roi_score_table(fits, "subj01"), ["Unknown", "early", "late"])
    assert table.attrs["score"] == "r" and "noise_ceiling" not in table
    assert list(table["roi"]) == ["early", "late", "all vertices"]
    assert table.loc[2, "good"] == pytest.approx(results["good"].per_vertex["r"].mean())
    assert (table["good"] > table["bad"]).all()
    fig = plot_score_bars(table, ["good", "bad"], output_file=tmp_path / "bars.png")
    assert fig.axes[0].get_ylabel().startswith("Pearson r") and (tmp_path / "bars.png").is_file()
    abl = ablation_table(fits, "subj01", {"early": np.arange(v) < 10})
    assert "mean_score" not in abl and {"mean_r", "mean_r2", "challenge_mean_r", "early_r", "early_r2"} <= set(abl)
    assert not abl.drop(columns="model").isna().any().any()
    with_nc = {"x": SimpleNamespace(evaluation={"subj01": evaluate_predictions(target, target, _meta(rng, v), image)})}
    with pytest.raises(ValueError, match="scored by"):
        roi_score_table({**fits, **with_nc}, "subj01")

