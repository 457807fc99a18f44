"""Scores on a split: per-vertex r, noise-normalised scores, ROI tables, image identification.

Two scores (see :mod:`brainnet.training.metrics`): ``score`` / ``mean_score`` is **trial-level**
(r over single trials / NC of the mean of 3 repeats: what training and acceptance criteria use);
``challenge_score`` is the **Algonauts challenge score** (image-averaged, NC from the scored images'
repeat counts), the only one comparable with challenge numbers. A dataset without a noise ceiling
(prepared from the Algonauts 2023 release alone) has neither: its scores are Pearson r and r²
(``summary["score_kind"]`` says which).

Works on predictions of any model (encoding models, ridge baselines), so every model is scored
by the same code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from brainnet.data.noise_ceiling import ncsnr_from_noise_ceiling
from brainnet.data.prepared import PreparedDataset, PreparedSubject
from brainnet.errors import MissingInputError

from .identification import identification_accuracy
from .metrics import (
    SCORE_NOISE_NORMALIZED,
    SCORE_PEARSON_R,
    challenge_score,
    explained_variance,
    image_level_r,
    image_means,
    noise_normalized_score,
    pearson_r,
    roi_means,
    summarize,
)

logger = logging.getLogger(__name__)

#: held-out points an :class:`EvalResult` keeps per vertex (predicted vs measured, e.g. the explorer's scatter)
SAMPLE_POINTS = 200


@dataclass
class SubjectMeta:
    """Per-vertex metadata of one subject: nc (V,) fraction (the stored NC of the mean of 3 repeats), or
    None for a dataset without a noise ceiling (scores then fall back to Pearson r and r²), rois
    {atlas: (labels (V,), names)}, hemi int64 (V,), challenge bool (V,); ``ncsnr`` (V,) derived."""

    name: str
    nc: np.ndarray | None
    rois: dict
    hemi: np.ndarray
    challenge: np.ndarray

    @classmethod
    def from_subject(cls, subject: PreparedSubject) -> SubjectMeta:
        nc = (np.clip(subject.noise_ceiling.astype(np.float64), 0.0, 1.0)
              if subject.dataset.has("noise_ceiling") else None)
        return cls(subject.name, nc, dict(subject.rois), subject.hemi.astype(np.int64), subject.challenge)

    @property
    def n_vertices(self) -> int:
        return int(self.hemi.size)

    @property
    def score_kind(self) -> str:
        """:data:`~.metrics.SCORE_NOISE_NORMALIZED` with a noise ceiling, else :data:`~.metrics.SCORE_PEARSON_R`."""
        return SCORE_PEARSON_R if self.nc is None else SCORE_NOISE_NORMALIZED

    @property
    def ncsnr(self) -> np.ndarray | None:
        """float64 (V,) NSD ncsnr recovered from :attr:`nc` (None without a noise ceiling)."""
        return None if self.nc is None else ncsnr_from_noise_ceiling(self.nc)

    @classmethod
    def load(cls, root: str | Path | PreparedDataset, subject) -> SubjectMeta:
        """The metadata of ``subject`` ("subj01" or 1) of a prepared dataset (or its directory)."""
        dataset = PreparedDataset.open(root)
        return cls.from_subject(dataset.subject(subject))


def check_scored_split(data: str | Path | PreparedDataset, subject, split: str) -> None:
    """Refuse to score ``split`` of ``subject`` where it has no fMRI (``predict`` / ``heldout`` of a dataset
    prepared from the Algonauts 2023 release alone: the test images' responses are not released).

    Raises:
        MissingInputError: naming the dataset, the split and what to do instead.
    """
    dataset = PreparedDataset.open(data)
    if not dataset.subject(subject).has_fmri(split):
        raise MissingInputError(f"{dataset.root}: split {split!r} of {dataset.subject(subject).name} has no fMRI "
                                f"(a dataset of level {dataset.level!r}: the Algonauts 2023 release has no "
                                "responses to its test images), so it cannot be scored. Score 'test' (or 'val') "
                                "instead; predict the test images for a submission with "
                                "brainnet.training.submission.write_test_submission")


def scorable_split(data: str | Path | PreparedDataset, subjects, split: str, fallback: str = "test") -> str:
    """``split`` when every subject has fMRI there, else ``fallback`` (logged): e.g. ``"heldout"`` on a dataset
    prepared from the Algonauts 2023 release alone scores on ``"test"`` (image-disjoint from training)."""
    dataset = PreparedDataset.open(data)
    if all(dataset.subject(s).has_fmri(split) for s in subjects):
        return split
    for s in subjects:
        check_scored_split(dataset, s, fallback)
    logger.warning("split %r has no fMRI on %s (level %r): scoring %r instead", split, dataset.root, dataset.level,
                   fallback)
    return fallback


@dataclass
class Predictions:
    """Trial-level predictions of one subject: pred / target (n, V) float32, trial / image rows (n,)."""

    subject: str
    trial: np.ndarray
    image: np.ndarray
    pred: np.ndarray
    target: np.ndarray


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, dataset, batch_size: int = 64, device=None) -> dict[str, Predictions]:
    """Run ``model`` over every trial of an :class:`EncodingDataset`; dict subject -> Predictions."""
    from .batches import make_loader

    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, list]] = {}
    try:
        for batch in make_loader(dataset, batch_size, shuffle=False):
            moved = _to_device(batch, device)
            pred = model(moved).float().cpu().numpy()
            d = out.setdefault(batch["subject"], {"trial": [], "image": [], "pred": [], "target": []})
            d["trial"].append(batch["trial"].numpy())
            d["image"].append(batch["image"].numpy())
            d["pred"].append(pred)
            d["target"].append(batch["fmri"].numpy())
    finally:
        model.train(was_training)
    return {s: Predictions(s, *(np.concatenate(d[k]) for k in ("trial", "image", "pred", "target")))
            for s, d in out.items()}


def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


@dataclass
class EvalResult:
    """Scores of one subject on one split.

    Attributes
    ----------
    per_vertex : DataFrame (V rows): r, r2 (``clip(r, 0)^2``), hemi, one column per ROI atlas; with a
        noise ceiling also score (trial-level) and nc (fraction, 3 repeats); with image ids also
        challenge_r and challenge_r2 (image-averaged), and with a noise ceiling challenge_score,
        challenge_nc (fraction, for the scored images' repeat counts)
    summary : score_kind (:data:`~.metrics.SCORE_NOISE_NORMALIZED`, or :data:`~.metrics.SCORE_PEARSON_R`
        where the dataset has no noise ceiling: then no ``*score*`` keys, r and r² are the scores);
        mean_r, median_r, mean_r2, median_r2 (trial-level: r over single trials), n_trials; with a noise
        ceiling mean_score, median_score (score = 100 r^2 / NC of 3 repeats); with image ids
        challenge_mean_r, challenge_r2 (image-averaged, mean over the Algonauts mask's vertices: all of
        them unless prepare added vertices by NC) and with a noise ceiling challenge_score (the Algonauts
        challenge score: NC from the repeat counts), n_images, identification (top-1 accuracy among
        ``n_candidates`` images, image-averaged responses), n_candidates
    roi_table : DataFrame: atlas, roi, n_vertices, mean_r, mean_r2, and with a noise ceiling mean_score,
        mean_nc (percent)
    sample_pred, sample_target : float32 arrays (N, V), N <= :data:`SAMPLE_POINTS`: predicted and measured
        responses of evenly spaced scored images (image-averaged over repeats; trials where image ids are
        unknown), for scatter plots (:func:`sample_points`)
    """

    subject: str
    per_vertex: pd.DataFrame
    summary: dict
    roi_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    sample_pred: np.ndarray | None = None
    sample_target: np.ndarray | None = None


def sample_points(pred: np.ndarray, target: np.ndarray, n: int = SAMPLE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``n`` evenly spaced (predicted, measured) rows: float32 arrays (N, V) each.

    pred, target : (n_rows, V): trials, or image means (images in id order).
    """
    keep = np.unique(np.linspace(0, len(pred) - 1, min(int(n), len(pred))).round().astype(np.int64))
    return np.asarray(pred[keep], np.float32), np.asarray(target[keep], np.float32)


def evaluate_predictions(pred: np.ndarray, target: np.ndarray, meta: SubjectMeta, image: np.ndarray | None = None,
                         n_candidates: int = 300, n_draws: int = 30, seed: int = 0) -> EvalResult:
    """Score trial-level predictions (noise-normalised scores where ``meta`` has a noise ceiling,
    Pearson r and r² only where it has none: see :class:`EvalResult`).

    Parameters
    ----------
    pred, target : arrays of shape (n_trials, V)
    meta : the subject's :class:`SubjectMeta`
    image : int array (n_trials,) image row per trial, for identification and the challenge score
        (None: both skipped)
    n_candidates : candidates per identification trial (capped at the number of images)
    """
    pred = np.asarray(pred, np.float64)
    target = np.asarray(target, np.float64)
    if pred.shape != target.shape or pred.ndim != 2 or pred.shape[1] != meta.n_vertices:
        raise ValueError(f"pred {pred.shape} and target {target.shape} must be (n, V={meta.n_vertices})")
    r = pearson_r(pred, target)
    summary = {"score_kind": meta.score_kind, **summarize(r, meta.nc), "n_trials": int(pred.shape[0])}
    table = pd.DataFrame({"r": r, "r2": explained_variance(r), "hemi": meta.hemi})
    if meta.nc is not None:
        table["score"], table["nc"] = noise_normalized_score(r, meta.nc), meta.nc
    if image is None:
        samples = sample_points(pred, target)
    else:
        imgs, p_img, _ = image_means(pred, image)
        _, t_img, _ = image_means(target, image)
        samples = sample_points(p_img, t_img)
        summary["n_images"] = int(imgs.size)
        if imgs.size >= 2:
            k = min(int(n_candidates), int(imgs.size))
            summary["identification"] = identification_accuracy(p_img, t_img, k, n_draws, seed)
            summary["n_candidates"] = k
            scored = meta.challenge if meta.challenge.any() else slice(None)  # the challenge's vertices
            if meta.nc is not None:
                ch = challenge_score(pred, target, image, meta.ncsnr)
                ch_r = ch.r
                summary["challenge_score"] = float(ch.score[scored].mean())
                table["challenge_score"], table["challenge_nc"] = ch.score, ch.nc
            else:
                ch_r, _ = image_level_r(pred, target, image)
            table["challenge_r"], table["challenge_r2"] = ch_r, explained_variance(ch_r)
            summary.update(challenge_mean_r=float(ch_r[scored].mean()),
                           challenge_r2=float(table["challenge_r2"].to_numpy()[scored].mean()))
    return EvalResult(meta.name, table, summary, _roi_table(table, meta), *samples)


def _roi_table(table: pd.DataFrame, meta: SubjectMeta) -> pd.DataFrame:
    """Per ROI of every atlas: n_vertices and the means of r, r2 and (with a noise ceiling) score and nc (percent)."""
    columns = {"mean_r": table["r"], "mean_r2": table["r2"]}
    if meta.nc is not None:
        columns.update(mean_score=table["score"], mean_nc=meta.nc * 100)
    rows = []
    for atlas, (labels, names) in meta.rois.items():
        table[atlas] = labels
        means = {k: roi_means(np.asarray(v), labels, names) for k, v in columns.items()}
        counts = {str(names[c]): int((labels == c).sum()) for c in np.unique(labels) if c != 0}
        rows += [{"atlas": atlas, "roi": n, "n_vertices": counts[n], **{k: m[n] for k, m in means.items()}}
                 for n in means["mean_r"]]
    return pd.DataFrame(rows)
