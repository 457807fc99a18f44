"""Linear baselines on the same splits and metrics as the encoding models.

* :func:`fit_ridge` - ridge regression with one regularisation strength per vertex, chosen by
  cross-validation (himalaya ``RidgeCV``), on pooled backbone features of the current image.
* :func:`fit_pca_linear` - the Algonauts 2023 tutorial recipe: PCA to 100 components fitted on the
  training images, then ordinary least squares.

Both see only the current image (no memory, no answers): the reference point the memory
encoding model is compared with. Features are per image; a trial's row is its image's row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from brainnet.data.layout import split_mask, subject_name

from .batches import FeatureSet, SubjectTrials
from .evaluate import EvalResult, SubjectMeta, check_scored_split, evaluate_predictions


def pooled_features(features: FeatureSet, pool: int = 2, layers=None) -> np.ndarray:
    """Per image: each layer's local map average-pooled to ``pool x pool`` and flattened, plus its
    global token, all layers concatenated.

    Returns float32 array of shape (n_images, sum_l C_l * (pool^2 + 1)).
    """
    if pool < 1:
        raise ValueError(f"pool must be >= 1, got {pool}")
    names = list(features.layer_names) if layers is None else [str(x) for x in layers]
    parts = []
    for n in names:
        if n not in features.local:
            raise ValueError(f"layer {n!r} not in the features ({features.layer_names})")
        loc = torch.from_numpy(np.asarray(features.local[n], np.float32))
        parts.append(F.adaptive_avg_pool2d(loc, pool).flatten(1).numpy())
        parts.append(np.asarray(features.global_[n], np.float32))
    return np.concatenate(parts, axis=1)


@dataclass
class BaselineResult:
    """Predictions and scores of a baseline for one subject.

    pred / target : (n_eval_trials, V); trial / image : (n_eval_trials,); evaluation : EvalResult;
    alphas : (V,) chosen regularisation per vertex (ridge only).
    """

    name: str
    subject: str
    pred: np.ndarray
    target: np.ndarray
    trial: np.ndarray
    image: np.ndarray
    evaluation: EvalResult
    alphas: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def _design(root, subject, x_images: np.ndarray, eval_split: str):
    """Training images (responses averaged over their repeats) and trial-level eval rows.

    Fitting on image means (as the Algonauts training data are) keeps the repeats of one image
    out of different cross-validation folds, so the chosen alphas are not biased low.
    """
    check_scored_split(root, subject, eval_split)
    st = SubjectTrials.load(root, subject)
    tr = np.flatnonzero(split_mask(st.split, st.image, "train"))
    ev = np.flatnonzero(split_mask(st.split, st.image, eval_split))
    if tr.size < 2 or ev.size < 2:
        raise ValueError(f"{subject}: need >= 2 train and eval trials, got {tr.size} / {ev.size}")
    images, inv = np.unique(st.image[tr], return_inverse=True)
    y_tr = np.zeros((images.size, st.n_vertices), np.float64)
    np.add.at(y_tr, inv, np.asarray(st.fmri[tr], np.float64))
    y_tr = (y_tr / np.bincount(inv, minlength=images.size)[:, None]).astype(np.float32)
    x_tr, x_ev = x_images[images], x_images[st.image[ev]]
    y_ev = np.asarray(st.fmri[ev], np.float32)
    return st, tr, ev, x_tr, x_ev, y_tr, y_ev


def _standardize(x_tr: np.ndarray, x_ev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = x_tr.mean(0), x_tr.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    return ((x_tr - mu) / sd).astype(np.float32), ((x_ev - mu) / sd).astype(np.float32)


def fit_ridge(root: str | Path, subject, features: FeatureSet, eval_split: str = "test", pool: int = 2,
              alphas=None, cv: int = 5, n_targets_batch: int | None = None) -> BaselineResult:
    """Ridge baseline with a cross-validated alpha per vertex (himalaya ``RidgeCV``).

    Parameters
    ----------
    root : prepared dataset; subject : "subj01" or 1
    features : cached tokens (see :func:`pooled_features`)
    eval_split : split scored ("test", "val", "predict" or "heldout")
    pool : local maps pooled to pool x pool
    alphas : candidate strengths (default ``logspace(0, 6, 13)`` times the feature count / 100)
    cv : folds; n_targets_batch : vertices per solver batch (memory knob; None = all)
    """
    from himalaya.ridge import RidgeCV

    name = subject_name(subject)
    x_img = pooled_features(features, pool)
    st, tr, ev, x_tr, x_ev, y_tr, y_ev = _design(root, name, x_img, eval_split)
    x_tr, x_ev = _standardize(x_tr, x_ev)
    if alphas is None:
        alphas = np.logspace(0, 6, 13) * max(1.0, x_tr.shape[1] / 100.0)
    model = RidgeCV(alphas=np.asarray(alphas, np.float64), cv=cv,
                    solver_params={"n_targets_batch": n_targets_batch})
    model.fit(x_tr, y_tr)
    pred = np.asarray(model.predict(x_ev), np.float32)
    meta = SubjectMeta.load(root, name)
    ev_res = evaluate_predictions(pred, y_ev, meta, st.image[ev])
    return BaselineResult("ridge", name, pred, y_ev, ev, st.image[ev], ev_res, np.asarray(model.best_alphas_),
                          {"n_features": int(x_tr.shape[1]), "n_train_trials": int(tr.size),
                           "n_train_images": int(x_tr.shape[0])})


def fit_pca_linear(root: str | Path, subject, features: FeatureSet, eval_split: str = "test", pool: int = 2,
                   n_components: int = 100, seed: int = 0) -> BaselineResult:
    """Algonauts tutorial baseline: PCA (``n_components``, fitted on the training images) + least squares."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression

    name = subject_name(subject)
    x_img = pooled_features(features, pool)
    st, tr, ev, x_tr, x_ev, y_tr, y_ev = _design(root, name, x_img, eval_split)
    x_tr, x_ev = _standardize(x_tr, x_ev)
    k = int(min(n_components, x_tr.shape[0], x_tr.shape[1]))
    pca = PCA(n_components=k, random_state=seed).fit(x_tr)
    reg = LinearRegression().fit(pca.transform(x_tr), y_tr)
    z_ev = pca.transform(x_ev)
    pred = reg.predict(z_ev).astype(np.float32)
    meta = SubjectMeta.load(root, name)
    ev_res = evaluate_predictions(pred, y_ev, meta, st.image[ev])
    return BaselineResult("pca_linear", name, pred, y_ev, ev, st.image[ev], ev_res, None,
                          {"n_components": k, "n_train_trials": int(tr.size),
                           "n_train_images": int(x_tr.shape[0])})
