"""Scores on a split: per-vertex r, noise-normalised scores, ROI tables, image identification.

Two scores (see :mod:`brainnet.training.metrics`): ``score`` / ``mean_score`` is **trial-level**
(r over single trials / NC of the mean of 3 repeats: what training and acceptance criteria use);
``challenge_score`` is the **Algonauts challenge score** (image-averaged, NC from the scored images'
repeat counts), the only one comparable with challenge numbers.

Works on predictions of any model (encoding models, ridge baselines), so every model is scored
by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from brainnet.data.noise_ceiling import ncsnr_from_noise_ceiling
from brainnet.data.prepared import PreparedDataset, PreparedSubject

from .metrics import (
    challenge_score,
    identification_accuracy,
    image_means,
    noise_normalized_score,
    pearson_r,
    roi_means,
    summarize,
)


@dataclass
class SubjectMeta:
    """Per-vertex metadata of one subject: nc (V,) fraction (the stored NC of the mean of 3 repeats),
    rois {atlas: (labels (V,), names)}, hemi int64 (V,), challenge bool (V,); ``ncsnr`` (V,) derived."""

    name: str
    nc: np.ndarray
    rois: dict
    hemi: np.ndarray
    challenge: np.ndarray

    @classmethod
    def from_subject(cls, subject: PreparedSubject) -> SubjectMeta:
        nc = np.clip(subject.noise_ceiling.astype(np.float64), 0.0, 1.0)
        return cls(subject.name, nc, dict(subject.rois), subject.hemi.astype(np.int64), subject.challenge)

    @property
    def ncsnr(self) -> np.ndarray:
        """float64 (V,) NSD ncsnr recovered from :attr:`nc`."""
        return ncsnr_from_noise_ceiling(self.nc)

    @classmethod
    def load(cls, root: str | Path | PreparedDataset, subject) -> SubjectMeta:
        """The metadata of ``subject`` ("subj01" or 1) of a prepared dataset (or its directory)."""
        dataset = PreparedDataset.open(root)
        return cls.from_subject(dataset.subject(subject))


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
    per_vertex : DataFrame (V rows): r, score (trial-level), nc (fraction, 3 repeats), hemi, one column
        per ROI atlas; with image ids also challenge_r, challenge_score, challenge_nc (fraction, for the
        scored images' repeat counts)
    summary : mean_r, median_r, mean_score, median_score (trial-level: r over single trials, score =
        100 r^2 / NC of 3 repeats); with image ids also challenge_score (the Algonauts challenge score:
        image-averaged, NC from the repeat counts, mean over the Algonauts mask's vertices: all of them
        unless prepare added vertices by NC), challenge_mean_r, n_images,
        identification (top-1 accuracy among ``n_candidates`` images, image-averaged responses),
        n_candidates; n_trials
    roi_table : DataFrame: atlas, roi, n_vertices, mean_r, mean_score, mean_nc (percent)
    """

    subject: str
    per_vertex: pd.DataFrame
    summary: dict
    roi_table: pd.DataFrame = field(default_factory=pd.DataFrame)


def evaluate_predictions(pred: np.ndarray, target: np.ndarray, meta: SubjectMeta, image: np.ndarray | None = None,
                         n_candidates: int = 300, n_draws: int = 30, seed: int = 0) -> EvalResult:
    """Score trial-level predictions.

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
    if pred.shape != target.shape or pred.shape[1] != meta.nc.size:
        raise ValueError(f"pred {pred.shape} and target {target.shape} must be (n, V={meta.nc.size})")
    r = pearson_r(pred, target)
    score = noise_normalized_score(r, meta.nc)
    summary = summarize(r, meta.nc)
    summary.update(n_trials=int(pred.shape[0]))
    table = pd.DataFrame({"r": r, "score": score, "nc": meta.nc, "hemi": meta.hemi})
    if image is not None:
        imgs, p_img, _ = image_means(pred, image)
        _, t_img, _ = image_means(target, image)
        summary["n_images"] = int(imgs.size)
        if imgs.size >= 2:
            k = min(int(n_candidates), int(imgs.size))
            summary["identification"] = identification_accuracy(p_img, t_img, k, n_draws, seed)
            summary["n_candidates"] = k
            ch = challenge_score(pred, target, image, meta.ncsnr)
            scored = meta.challenge if meta.challenge.any() else slice(None)  # the challenge's vertices
            summary.update(challenge_score=float(ch.score[scored].mean()), challenge_mean_r=float(ch.r[scored].mean()))
            table["challenge_r"], table["challenge_score"], table["challenge_nc"] = ch.r, ch.score, ch.nc
    rows = []
    for atlas, (labels, names) in meta.rois.items():
        table[atlas] = labels
        mr, ms = roi_means(r, labels, names), roi_means(score, labels, names)
        mn = roi_means(meta.nc * 100, labels, names)
        counts = {str(names[c]): int((labels == c).sum()) for c in np.unique(labels) if c != 0}
        rows += [{"atlas": atlas, "roi": n, "n_vertices": counts[n], "mean_r": mr[n], "mean_score": ms[n],
                  "mean_nc": mn[n]} for n in mr]
    return EvalResult(meta.name, table, summary, pd.DataFrame(rows))
