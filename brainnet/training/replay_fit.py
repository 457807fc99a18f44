"""Memory replay, the fits: one lag model from an image's vector to every vertex.

A lag model sees one image per trial (the image shown k slots before it; which one, and which
trials fit or score, is :mod:`brainnet.analysis.replay_design`) and predicts the current
response. Two kinds (``ReplayConfig.model``):

* ``"ridge"`` — himalaya ``RidgeCV`` from the image's vector (every backbone layer's global
  token, concatenated, z-scored over images) to every vertex, one penalty per vertex chosen by
  the mean inner-CV Pearson r over ``inner_folds`` folds of scikit-learn's ``GroupKFold`` over
  images (all repeats of an image in one fold), then refitted on all fit trials. Seconds.
* ``"mlp"`` — :class:`brainnet.models.LagModel` trained through the project's LightningModule
  (:func:`brainnet.training.replay_mlp.fit_mlp`).

The image vectors come from the shared token cache (:func:`brainnet.training.features.build_features`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from himalaya.ridge import RidgeCV  # imported with the module: its BLAS is loaded before a cell limits threads
from himalaya.scoring import correlation_score
from sklearn.model_selection import GroupKFold

from brainnet.data.layout import SPLIT_CODES
from brainnet.models.configs import DictConfig

log = logging.getLogger(__name__)

__all__ = ["MODELS", "ReplayConfig", "ReplayFeatures", "fit_ridge", "inner_folds", "replay_features"]

MODELS = ("ridge", "mlp")


@dataclass(frozen=True)
class ReplayConfig(DictConfig):
    """Settings of one lag model (shared by every cell of a grid).

    Attributes
    ----------
    model : ``"ridge"`` or ``"mlp"``.
    alphas : ridge penalties tried per vertex (on z-scored features).
    inner_folds : ``GroupKFold`` folds over the fit images (ridge: all folds choose the penalty;
        mlp: the first fold is the inner validation set that chooses the epoch).
    fit_splits, score_splits : split names of the fit and the scored trials.
    hidden, out_dim, dropout : :class:`~brainnet.models.LagModel` sizes (mlp).
    epochs, lr, weight_decay, batch_size : mlp optimisation (AdamW, constant rate, MSE loss).
    """

    model: str = "ridge"
    alphas: tuple[float, ...] = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
    inner_folds: int = 5
    fit_splits: tuple[str, ...] = ("train",)
    score_splits: tuple[str, ...] = ("val", "test", "predict")
    hidden: int = 256
    out_dim: int = 64
    dropout: float = 0.1
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 128

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if not self.alphas or min(self.alphas) <= 0:
            raise ValueError(f"alphas must be a non-empty tuple of positive numbers, got {self.alphas}")
        if self.inner_folds < 2:
            raise ValueError(f"inner_folds must be >= 2, got {self.inner_folds}")
        for name in ("fit_splits", "score_splits"):
            splits = getattr(self, name)
            bad = [s for s in splits if s not in SPLIT_CODES]
            if not splits or bad:
                raise ValueError(f"{name} must name splits of {list(SPLIT_CODES)}, got {splits}")
        if set(self.fit_splits) & set(self.score_splits):
            raise ValueError(f"fit_splits {self.fit_splits} and score_splits {self.score_splits} overlap")
        if min(self.hidden, self.out_dim, self.epochs, self.batch_size) < 1 or self.lr <= 0:
            raise ValueError("hidden, out_dim, epochs, batch_size must be >= 1 and lr > 0")


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class ReplayFeatures:
    """One vector per image: the backbone's global tokens, z-scored over images.

    Attributes
    ----------
    vectors : float32 array of shape (n_images, sum(widths)), layers concatenated in order.
    widths : width of each layer's block.
    layer_names : the layers.
    backbone : backbone name.
    weights : the backbone's ``weights_id`` ("" when unknown, e.g. loaded from an older file).
    """

    vectors: np.ndarray
    widths: tuple[int, ...]
    layer_names: tuple[str, ...]
    backbone: str
    weights: str = ""

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, vectors=self.vectors, widths=np.asarray(self.widths),
                 layer_names=np.asarray(self.layer_names), backbone=np.asarray(self.backbone),
                 weights=np.asarray(self.weights))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReplayFeatures:
        with np.load(path) as z:
            return cls(z["vectors"].astype(np.float32), tuple(int(w) for w in z["widths"]),
                       tuple(str(n) for n in z["layer_names"]), str(z["backbone"]),
                       str(z["weights"]) if "weights" in z.files else "")

    def split_layers(self) -> list[np.ndarray]:
        """The per-layer blocks, each (n_images, width)."""
        return np.split(self.vectors, np.cumsum(self.widths)[:-1], axis=1)


def replay_features(data, backbone="brainnet-tiny", layers: Sequence | None = None, batch_size: int = 64,
                    num_workers: int = 0, progress: bool = False) -> ReplayFeatures:
    """Global tokens of every image of a prepared dataset (path or PreparedDataset), all layers.

    The tokens come from the shared token cache (:func:`~brainnet.training.features.build_features`,
    local maps pooled to 1 x 1 as they are not used); each dimension is z-scored over the
    images in float64 (a constant dimension becomes 0).
    """
    from .features import build_features

    fs = build_features(data, backbone, layers=layers, pool=1, batch_size=batch_size, num_workers=num_workers,
                        progress=progress)
    blocks = [np.asarray(fs.global_[name], dtype=np.float32) for name in fs.layer_names]
    x = np.concatenate(blocks, axis=1).astype(np.float64)
    sd = x.std(axis=0)
    x = np.divide(x - x.mean(axis=0), sd, out=np.zeros_like(x), where=sd > 0)
    return ReplayFeatures(x.astype(np.float32), tuple(b.shape[1] for b in blocks), tuple(fs.layer_names),
                          fs.backbone, fs.weights)


# --------------------------------------------------------------------------- ridge


def inner_folds(groups: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, held-out rows) of ``GroupKFold`` (shuffled with ``seed``) over ``groups`` (n,):
    each group's rows (an image's repeats) fall in one fold."""
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise ValueError(f"need at least {n_folds} distinct fit images for {n_folds} inner folds, got {n_groups}")
    folds = GroupKFold(n_splits=n_folds, shuffle=True, random_state=int(seed))
    return list(folds.split(np.zeros((len(groups), 1)), groups=groups))


def fit_ridge(x: np.ndarray, y: np.ndarray, alphas: Sequence[float], groups: np.ndarray, n_folds: int = 5,
              seed: int = 0):
    """Ridge regression with one penalty per vertex, cross-validated over groups (images).

    Parameters
    ----------
    x : (n, D) features; y : (n, V) responses (both fitted in float32); groups : (n,) image per row.
    alphas : penalties tried; n_folds, seed : the inner ``GroupKFold`` (see :func:`inner_folds`).

    Returns
    -------
    A fitted ``himalaya.ridge.RidgeCV`` (with intercept): ``.predict(x) -> (n, V)``,
    ``.best_alphas_`` (V,) — each vertex's penalty, the best mean inner-fold Pearson r.
    """
    x = np.asarray(x, dtype=np.float32)  # float32: the features and responses are stored at (or below)
    y = np.asarray(y, dtype=np.float32)  # that precision, and himalaya runs ~1.6x faster than in float64
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 3:
        raise ValueError(f"x (n, D) and y (n, V) need the same n >= 3 rows, got {x.shape} and {y.shape}")
    model = RidgeCV(alphas=np.asarray(alphas, dtype=np.float32), fit_intercept=True,
                    cv=inner_folds(groups, n_folds, seed),
                    solver_params={"score_func": correlation_score, "warn": False})
    return model.fit(x, y)
