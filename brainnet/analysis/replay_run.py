"""Memory replay, the training side: one model per (subject, lag, real | control), scored per vertex.

For each lag k (0 = the current image, k = the image shown k run slots earlier, blank slots
counted) a model predicts the *current* trial's response from the lag-k image alone; the
control is the same model with the lag-k images shuffled among the trials
(:func:`~brainnet.analysis.memory_replay.lag_design`). The maths around the resulting scores
(profiles, peak / period bootstrap, chance test) lives in :mod:`brainnet.analysis.memory_replay`.

Which trials fit, which score (image-disjoint)
----------------------------------------------
*Fit images* are the images of the subject's ``fit_splits`` trials (default: train). For lag k:

* fit trials: split in ``fit_splits`` and lag-k image a fit image;
* scored trials: split in ``score_splits`` (default val, test, predict) and lag-k image **not**
  a fit image — no image a model was fitted on is ever scored, at any lag.

Trials whose lag-k slot is blank (or before the run start) take no part. The control shuffles
the lag-k images within (role, session) groups (role = fit / scored / neither), so it keeps the
image-disjointness and each session's image set; only the trial-image link is broken.

Models (``ReplayConfig.model``)
-------------------------------
* ``"ridge"`` — closed-form ridge from the image's vector (every backbone layer's global token,
  concatenated, z-scored over images) to every vertex; the penalty is chosen per vertex on a
  held-out fifth of the fit images (grouped by image), then refitted on all fit trials. Seconds.
* ``"mlp"`` — :class:`brainnet.models.LagModel` (layer vectors -> MLP -> per-vertex readout),
  AdamW on the fit trials, the epoch with the best inner-validation mean r kept.

Running the grid
----------------
:func:`replay_trial` is one grid cell (a Ray Tune trainable: ``config`` dict in, metrics out; its
arrays go to ``results_dir``). :func:`run_replay` runs the subject x lag x {real, control} grid
through :func:`brainnet.training.grid.run_grid` (``use_ray=True``) or in this process, loops
over the same function with the same per-trial seeds (``use_ray=False``), and gathers a
:class:`ReplayResult`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from brainnet.analysis.memory_replay import (
    ChanceTest,
    PeakEstimate,
    control_at_chance,
    estimate_peak,
    lag_design,
    lag_profile,
    per_trial_products,
)

__all__ = [
    "MODELS",
    "ReplayConfig",
    "ReplayFeatures",
    "ReplayResult",
    "SubjectReplay",
    "fit_ridge",
    "lag_trials",
    "replay_features",
    "replay_trial",
    "run_replay",
]

MODELS = ("ridge", "mlp")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "predict": 3}
CONDITIONS = ("real", "control")


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ReplayConfig:
    """Settings of one lag model (shared by every cell of a grid).

    Attributes
    ----------
    model : ``"ridge"`` or ``"mlp"``.
    alphas : ridge penalties tried per vertex (on z-scored features).
    inner_fraction : share of the fit images held out to choose the penalty (ridge) or the epoch
        (mlp); grouped by image.
    fit_splits, score_splits : split names of the fit and the scored trials.
    hidden, out_dim, dropout : :class:`~brainnet.models.LagModel` sizes (mlp).
    epochs, lr, weight_decay, batch_size : mlp optimisation (AdamW, MSE loss).
    """

    model: str = "ridge"
    alphas: tuple[float, ...] = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
    inner_fraction: float = 0.2
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
        if not 0 < self.inner_fraction < 1:
            raise ValueError(f"inner_fraction must be in (0, 1), got {self.inner_fraction}")
        for name in ("fit_splits", "score_splits"):
            splits = getattr(self, name)
            bad = [s for s in splits if s not in SPLIT_CODES]
            if not splits or bad:
                raise ValueError(f"{name} must name splits of {list(SPLIT_CODES)}, got {splits}")
        if set(self.fit_splits) & set(self.score_splits):
            raise ValueError(f"fit_splits {self.fit_splits} and score_splits {self.score_splits} overlap")
        if min(self.hidden, self.out_dim, self.epochs, self.batch_size) < 1 or self.lr <= 0:
            raise ValueError("hidden, out_dim, epochs, batch_size must be >= 1 and lr > 0")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping) -> "ReplayConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"ReplayConfig: unknown keys {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


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
    """

    vectors: np.ndarray
    widths: tuple[int, ...]
    layer_names: tuple[str, ...]
    backbone: str

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, vectors=self.vectors, widths=np.asarray(self.widths),
                 layer_names=np.asarray(self.layer_names), backbone=np.asarray(self.backbone))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ReplayFeatures":
        with np.load(path) as z:
            return cls(z["vectors"].astype(np.float32), tuple(int(w) for w in z["widths"]),
                       tuple(str(n) for n in z["layer_names"]), str(z["backbone"]))

    def split_layers(self) -> list[np.ndarray]:
        """The per-layer blocks, each (n_images, width)."""
        return np.split(self.vectors, np.cumsum(self.widths)[:-1], axis=1)


def replay_features(data_dir: str | os.PathLike, backbone="brainnet-tiny", layers: Sequence | None = None,
                    batch_size: int = 64, num_workers: int = 0, progress: bool = False) -> ReplayFeatures:
    """Global tokens of every image of a prepared dataset (``images/images.npy``), all layers.

    ``backbone`` is a registered name or a Backbone object; each dimension is z-scored over the
    images (a constant dimension becomes 0).
    """
    from brainnet.cache import TokenCache
    from brainnet.training.features import resolve_backbone

    images = np.load(Path(data_dir) / "images" / "images.npy", mmap_mode="r")
    bb = resolve_backbone(backbone) if isinstance(backbone, str) else backbone
    cache = TokenCache(bb, pool=None, layers=layers, store_local=False, namespace=str(Path(data_dir).resolve()))
    cache.fill(images, batch_size=batch_size, num_workers=num_workers, progress=progress)
    glob = cache.get(range(len(images)))[1]
    blocks = [glob[name].float().numpy() for name in cache.layers]
    x = np.concatenate(blocks, axis=1).astype(np.float64)
    sd = x.std(axis=0)
    x = np.divide(x - x.mean(axis=0), sd, out=np.zeros_like(x), where=sd > 0)
    name = backbone if isinstance(backbone, str) else type(backbone).__name__
    return ReplayFeatures(x.astype(np.float32), tuple(b.shape[1] for b in blocks), tuple(cache.layers), name)


# --------------------------------------------------------------------------- design


def lag_trials(
    memory_index: np.ndarray,
    split: np.ndarray,
    session: np.ndarray,
    image: np.ndarray,
    lag: int,
    control: bool = False,
    seed: int | None = None,
    fit_splits: Sequence[str] = ("train",),
    score_splits: Sequence[str] = ("val", "test", "predict"),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictor image and role of every trial for one lag (see the module docstring).

    Parameters
    ----------
    memory_index : int array (n_trials, n_slots); split, session, image : arrays (n_trials,) —
        the prepared ``memory_index.npy`` and ``trials.npz`` columns (split as int codes).
    control : shuffle the lag-k images within (role, session) groups; needs ``seed``.

    Returns
    -------
    rows : int64 (n_trials,), predictor image row, -1 where the trial takes no part.
    fit : bool (n_trials,), fit trials.
    score : bool (n_trials,), scored trials; ``fit & score`` is empty and no image of
        ``rows[score]`` is in ``rows[fit]`` or among the fit splits' images.
    """
    split = np.asarray(split)
    n = len(split)
    for name, arr in (("session", session), ("image", image)):
        if np.shape(arr) != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {np.shape(arr)}")
    if np.shape(memory_index)[0] != n:
        raise ValueError(f"memory_index has {np.shape(memory_index)[0]} rows for {n} trials")
    rows, valid = lag_design(memory_index, lag)
    fit_codes = [SPLIT_CODES[s] for s in fit_splits]
    score_codes = [SPLIT_CODES[s] for s in score_splits]
    fit_images = np.unique(np.asarray(image)[np.isin(split, fit_codes)])
    known = np.isin(rows, fit_images)
    fit = valid & np.isin(split, fit_codes) & known
    score = valid & np.isin(split, score_codes) & ~known
    if control:
        if seed is None:
            raise ValueError("control=True needs a seed")
        role = np.where(fit, 0, np.where(score, 1, 2))
        within = role * (int(np.max(session)) + 1) + np.asarray(session, dtype=np.int64)
        rows, _ = lag_design(memory_index, lag, shuffle=True, rng=seed, within=within)
    rows = np.where(fit | score, rows, -1)
    return rows, fit, score


# --------------------------------------------------------------------------- models


def _pearson_columns(pred: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Per-column Pearson r of two (n, V) arrays; 0 where a column is constant."""
    p = pred - pred.mean(axis=0)
    o = obs - obs.mean(axis=0)
    den = np.sqrt((p**2).sum(axis=0) * (o**2).sum(axis=0))
    return np.divide((p * o).sum(axis=0), den, out=np.zeros(p.shape[1]), where=den > 0)


def _inner_split(groups: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """bool (n,): True for the rows whose group is among a random ``fraction`` of the groups."""
    uniq = np.unique(groups)
    n_val = max(1, int(round(fraction * len(uniq))))
    if len(uniq) < 2:
        raise ValueError("need at least 2 distinct fit images to hold some out")
    held = rng.choice(uniq, size=min(n_val, len(uniq) - 1), replace=False)
    return np.isin(groups, held)


@dataclass(frozen=True)
class RidgeFit:
    """A fitted ridge map: ``pred = (x - x_mean) @ weights + y_mean``.

    Attributes: x_mean (D,), y_mean (V,), weights (D, V), alpha (V,) — the chosen penalty per vertex.
    """

    x_mean: np.ndarray
    y_mean: np.ndarray
    weights: np.ndarray
    alpha: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, D) -> (n, V)."""
        return (np.asarray(x, dtype=np.float64) - self.x_mean) @ self.weights + self.y_mean


def _ridge_solutions(x: np.ndarray, y: np.ndarray, alphas: Sequence[float]):
    """Centre, SVD, and a function alpha-index -> weights (D, V) (or restricted columns)."""
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    uty = u.T @ (y - y_mean)  # (k, V)

    def weights(a: int, cols=slice(None)) -> np.ndarray:
        return vt.T @ ((s / (s**2 + alphas[a]))[:, None] * uty[:, cols])

    return x_mean, y_mean, weights


def fit_ridge(x: np.ndarray, y: np.ndarray, alphas: Sequence[float], groups: np.ndarray,
              inner_fraction: float = 0.2, seed: int = 0) -> RidgeFit:
    """Ridge regression with the penalty chosen per vertex on held-out groups (images).

    Parameters
    ----------
    x : (n, D) features; y : (n, V) responses; groups : (n,) image per row.
    alphas : penalties tried; inner_fraction : share of the groups held out for the choice.

    Returns
    -------
    :class:`RidgeFit` refitted on all rows with each vertex's best penalty (best inner r).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 3:
        raise ValueError(f"x (n, D) and y (n, V) need the same n >= 3 rows, got {x.shape} and {y.shape}")
    alphas = [float(a) for a in alphas]
    held = _inner_split(np.asarray(groups), inner_fraction, np.random.default_rng(seed))
    xm, ym, w_of = _ridge_solutions(x[~held], y[~held], alphas)
    scores = np.stack([_pearson_columns((x[held] - xm) @ w_of(a) + ym, y[held]) for a in range(len(alphas))])
    best = np.argmax(scores, axis=0)  # (V,)
    xm, ym, w_of = _ridge_solutions(x, y, alphas)
    weights = np.zeros((x.shape[1], y.shape[1]))
    for a in np.unique(best):
        cols = np.flatnonzero(best == a)
        weights[:, cols] = w_of(a, cols)
    return RidgeFit(xm, ym, weights, np.asarray(alphas)[best])


def _fit_predict_mlp(features: ReplayFeatures, rows_fit, y_fit, rows_score, cfg: ReplayConfig, seed: int,
                     subject: str) -> np.ndarray:
    """Train a LagModel on the fit trials; return its predictions (n_score, V) (best inner epoch)."""
    import torch

    from brainnet.models.replay import LagConfig, LagModel

    torch.manual_seed(seed)
    layers = [torch.from_numpy(b) for b in features.split_layers()]
    held = _inner_split(rows_fit, cfg.inner_fraction, np.random.default_rng(seed))
    model = LagModel(LagConfig(in_dims=features.widths, hidden=cfg.hidden, out_dim=cfg.out_dim, dropout=cfg.dropout),
                     {subject: y_fit.shape[1]})
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    y_all = torch.from_numpy(np.asarray(y_fit, dtype=np.float32))
    train_idx = np.flatnonzero(~held)
    gen = np.random.default_rng(seed + 1)

    def predict(rows: np.ndarray) -> np.ndarray:
        model.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(rows), 512):
                r = torch.from_numpy(rows[start:start + 512])
                out.append(model({"vectors": [b[r] for b in layers], "subject": subject}).numpy())
        return np.concatenate(out) if out else np.zeros((0, y_fit.shape[1]), np.float32)

    best_r, best_state = -np.inf, None
    for _ in range(cfg.epochs):
        model.train()
        order = gen.permutation(train_idx)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            r = torch.from_numpy(rows_fit[idx])
            loss = torch.nn.functional.mse_loss(model({"vectors": [b[r] for b in layers], "subject": subject}),
                                                y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        val_r = float(np.mean(_pearson_columns(predict(rows_fit[held]), y_fit[held])))
        if val_r > best_r:
            best_r, best_state = val_r, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return predict(rows_score)


# --------------------------------------------------------------------------- one grid cell


def _subject_arrays(data_dir: Path, subject: str) -> dict[str, np.ndarray]:
    folder = data_dir / subject
    if not folder.is_dir():
        raise FileNotFoundError(f"{subject} not found in prepared dataset {data_dir}")
    with np.load(folder / "trials.npz") as t:
        out = {k: t[k] for k in ("split", "session", "image")}
    out["memory_index"] = np.load(folder / "memory_index.npy")
    out["fmri"] = np.load(folder / "fmri.npy", mmap_mode="r")
    return out


def result_file(results_dir: str | os.PathLike, subject: str, lag: int, control: bool) -> Path:
    """Where :func:`replay_trial` writes one cell's arrays."""
    return Path(results_dir) / f"{subject}_lag{int(lag):02d}_{CONDITIONS[int(bool(control))]}.npz"


def replay_trial(config: Mapping) -> dict:
    """One grid cell (see :func:`_replay_cell`), with BLAS / torch limited to ``config["threads"]``
    threads (default 1: the grid's parallelism is over cells; many BLAS threads per cell on a
    shared machine slow everything down)."""
    from threadpoolctl import threadpool_limits

    threads = int(config.get("threads") or 1)
    if dict(config.get("replay", {})).get("model", "ridge") == "ridge":  # no torch import: fast trial start
        with threadpool_limits(threads):
            return _replay_cell(config)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            return _replay_cell(config)
    finally:
        torch.set_num_threads(before)


def _replay_cell(config: Mapping) -> dict:
    """One grid cell: fit the lag model of (subject, lag, control), score it, save its arrays.

    ``config`` keys: ``data_dir``, ``features_path`` (:meth:`ReplayFeatures.save`),
    ``results_dir``, ``subject``, ``lag``, ``control`` (bool), ``seed`` (shuffle / inner split /
    init), ``groups_paths`` (optional {subject: npz of group name -> vertex index array};
    per-trial products are computed for each group), ``replay`` (a :meth:`ReplayConfig.to_dict`), ``threads``. A cell whose result file
    exists with the same config is not recomputed.

    Saved (``result_file``): ``r`` float32 (V,) per-vertex r on the scored trials; ``products``
    float64 (n_groups, n_trials) per-trial products (NaN where not scored); ``group_names``;
    ``score`` / ``fit`` bool (n_trials,); ``alpha`` (V,) (ridge) ; ``config`` (JSON).
    Returns ``mean_r``, ``n_fit``, ``n_score``, ``result_file``.
    """
    cfg = ReplayConfig.from_dict(dict(config.get("replay", {})))
    subject, lag, control = str(config["subject"]), int(config["lag"]), bool(config["control"])
    seed = int(config.get("seed", 0))
    out = result_file(config["results_dir"], subject, lag, control)
    stamp = json.dumps({k: config[k] for k in sorted(config) if k != "threads"}, sort_keys=True, default=str)
    if out.is_file():
        with np.load(out) as z:
            if str(z["config"]) == stamp:
                return {"mean_r": float(np.mean(z["r"])), "n_fit": int(z["fit"].sum()),
                        "n_score": int(z["score"].sum()), "result_file": str(out)}
    data_dir = Path(config["data_dir"])
    arrays = _subject_arrays(data_dir, subject)
    features = ReplayFeatures.load(config["features_path"])
    rows, fit, score = lag_trials(arrays["memory_index"], arrays["split"], arrays["session"], arrays["image"], lag,
                                  control=control, seed=seed, fit_splits=cfg.fit_splits, score_splits=cfg.score_splits)
    if fit.sum() < 10 or score.sum() < 4:
        raise ValueError(f"{subject} lag {lag}: too few trials ({fit.sum()} fit, {score.sum()} scored)")
    fmri = arrays["fmri"]
    y_fit = np.asarray(fmri[np.flatnonzero(fit)], dtype=np.float32)
    y_score = np.asarray(fmri[np.flatnonzero(score)], dtype=np.float64)
    alpha = np.full(y_fit.shape[1], np.nan)
    if cfg.model == "ridge":
        ridge = fit_ridge(features.vectors[rows[fit]], y_fit, cfg.alphas, rows[fit], cfg.inner_fraction, seed)
        pred = ridge.predict(features.vectors[rows[score]])
        alpha = ridge.alpha
    else:
        pred = _fit_predict_mlp(features, rows[fit], y_fit, rows[score], cfg, seed, subject).astype(np.float64)
    r = _pearson_columns(pred, y_score)
    groups = {"all": np.arange(y_fit.shape[1])}
    groups_path = dict(config.get("groups_paths") or {}).get(subject)
    if groups_path:
        with np.load(groups_path) as z:
            groups.update({k: z[k] for k in z.files})
    products = np.full((len(groups), len(fit)), np.nan)
    for g, idx in enumerate(groups.values()):
        if len(idx) > 0:
            products[g, score] = per_trial_products(pred[:, idx], y_score[:, idx])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, r=r.astype(np.float32), products=products, group_names=np.asarray(list(groups)),
             fit=fit, score=score, alpha=alpha, config=np.asarray(stamp))
    os.replace(tmp, out)
    return {"mean_r": float(r.mean()), "n_fit": int(fit.sum()), "n_score": int(score.sum()), "result_file": str(out)}


# --------------------------------------------------------------------------- results


@dataclass
class SubjectReplay:
    """All lag models of one subject.

    Attributes
    ----------
    subject : name; lags : int array (n_lags,).
    r : float32 array (2, n_lags, V) — per-vertex r; index 0 real, 1 control.
    products : group name -> float64 array (2, n_lags, n_trials), per-trial products (NaN =
        not scored at that lag).
    image : int64 (n_trials,) current image per trial (the bootstrap's resampling unit).
    n_fit, n_score : int arrays (2, n_lags) of trial counts.
    """

    subject: str
    lags: np.ndarray
    r: np.ndarray
    products: dict[str, np.ndarray]
    image: np.ndarray
    n_fit: np.ndarray
    n_score: np.ndarray

    def profile(self, labels: np.ndarray, names=None, control: bool = False) -> pd.DataFrame:
        """Mean r per ROI against lag (:func:`~brainnet.analysis.memory_replay.lag_profile`)."""
        return lag_profile(self.r[int(control)], labels, names, self.lags)

    def group_profile(self, group: str = "all", control: bool = False) -> np.ndarray:
        """(n_lags,) mean r of a vertex group's scored trials (the mean of its products)."""
        return np.nanmean(self._products(group)[int(control)], axis=1)

    def _products(self, group: str) -> np.ndarray:
        if group not in self.products:
            raise KeyError(f"no products for vertex group {group!r}; have {sorted(self.products)}")
        return self.products[group]

    def peak(self, group: str = "all", window: tuple[float, float] | None = (1, np.inf), n_boot: int = 1000,
             seed: int = 0, **kwargs) -> PeakEstimate:
        """Peak and period of the real models' profile on a vertex group, bootstrap over images."""
        return estimate_peak(self._products(group)[0], self.lags, groups=self.image, n_boot=n_boot, rng=seed,
                             window=window, **kwargs)

    def chance(self, group: str = "all", alpha: float = 0.05) -> ChanceTest:
        """Image-clustered test that the control's mean r (all lags) on a vertex group is 0."""
        return control_at_chance(products=self._products(group)[1], groups=self.image, alpha=alpha)


@dataclass
class ReplayResult:
    """:func:`run_replay` output: per-subject results and the grid's table (one row per cell)."""

    subjects: dict[str, SubjectReplay]
    table: pd.DataFrame
    config: ReplayConfig = field(default_factory=ReplayConfig)

    def __getitem__(self, subject: str) -> SubjectReplay:
        return self.subjects[subject]


def _gather(subject: str, lags: Sequence[int], results_dir: Path, n_trials: int, image: np.ndarray) -> SubjectReplay:
    r, products, n_fit, n_score = None, {}, np.zeros((2, len(lags)), int), np.zeros((2, len(lags)), int)
    for c in range(2):
        for k, lag in enumerate(lags):
            with np.load(result_file(results_dir, subject, lag, bool(c))) as z:
                if r is None:
                    r = np.zeros((2, len(lags), len(z["r"])), np.float32)
                r[c, k] = z["r"]
                for g, name in enumerate(z["group_names"]):
                    products.setdefault(str(name), np.full((2, len(lags), n_trials), np.nan))[c, k] = z["products"][g]
                n_fit[c, k], n_score[c, k] = int(z["fit"].sum()), int(z["score"].sum())
    return SubjectReplay(subject, np.asarray(lags), r, products, image, n_fit, n_score)


def run_replay(
    data_dir: str | os.PathLike,
    subjects: Sequence[str],
    lags: Sequence[int],
    features: ReplayFeatures | str | os.PathLike,
    out_dir: str | os.PathLike,
    config: ReplayConfig | None = None,
    vertex_groups: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    use_ray: bool = False,
    name: str = "memory_replay",
    seed: int = 0,
    num_cpus: int | None = None,
    threads: int = 1,
    progress: bool = True,
) -> ReplayResult:
    """Run the subject x lag x {real, control} grid of lag models and gather the results.

    Parameters
    ----------
    data_dir : prepared dataset; subjects : e.g. ``["subj01"]``; lags : e.g. ``range(17)``.
    features : :class:`ReplayFeatures` (saved under ``out_dir``) or the path of a saved one.
    out_dir : folder for the features, the per-cell arrays (``<out_dir>/<name>/arrays``) and
        the Ray Tune experiment (``<out_dir>/<name>``); on a cluster every node must reach it.
    config : :class:`ReplayConfig` (default ridge).
    vertex_groups : subject -> {group name: vertex index array}; per-trial products (for the
        peak bootstrap and the chance test) are kept for each group and for ``"all"``.
    use_ray : run the cells as Ray Tune trials (:func:`brainnet.training.grid.run_grid`; a
        local Ray instance is started if none is running); False: in this process, in order.
    seed : base seed; each cell's seed is ``trial_seed`` of its (subject, lag, control).
    num_cpus : CPUs of a newly started local Ray instance.
    threads : BLAS / torch threads per cell.
    """
    from brainnet.training.grid import grid_search, run_grid, trial_seed

    config = config or ReplayConfig()
    data_dir = Path(data_dir).resolve()
    out = Path(out_dir).resolve()
    root = out / name
    results_dir = root / "arrays"
    results_dir.mkdir(parents=True, exist_ok=True)
    lags = [int(k) for k in lags]
    subjects = [str(s) for s in subjects]
    if not lags or not subjects:
        raise ValueError("need at least one subject and one lag")
    if isinstance(features, ReplayFeatures):
        features_path = features.save(root / f"features-{features.backbone.replace(':', '_').replace('/', '_')}.npz")
    else:
        features_path = Path(features).resolve()
        if not features_path.is_file():
            raise FileNotFoundError(f"features file {features_path} not found")
    groups_paths = {}
    for subject in subjects:
        groups = dict((vertex_groups or {}).get(subject, {}))
        path = root / f"groups-{subject}.npz"
        np.savez(path, **{k: np.asarray(v, dtype=np.int64) for k, v in groups.items()})
        groups_paths[subject] = str(path)
    base = {"data_dir": str(data_dir), "features_path": str(features_path), "results_dir": str(results_dir),
            "replay": config.to_dict(), "threads": int(threads)}
    if use_ray:
        space = grid_search(subject=subjects, lag=lags, control=[False, True], base_seed=seed)
        space.update(base)
        space["groups_paths"] = groups_paths
        table = run_grid(replay_trial, space, name=name, storage_path=out, metric="mean_r", mode="max",
                         num_cpus=num_cpus, verbose=0)
        errors = table[table["error"].notna()] if "error" in table else table.iloc[:0]
        if len(errors):
            raise RuntimeError(f"{len(errors)} replay trials failed, e.g. {errors['error'].iloc[0]}")
    else:
        rows = []
        cells = [(s, k, c) for s in subjects for k in lags for c in (False, True)]
        for s, k, c in tqdm(cells, desc="lag models", disable=not progress):
            cell = {"subject": s, "lag": k, "control": c}
            cell_cfg = {**base, **cell, "seed": trial_seed(cell, seed), "groups_paths": groups_paths}
            rows.append({**cell, **replay_trial(cell_cfg)})
        table = pd.DataFrame(rows)
    result = {}
    for subject in subjects:
        with np.load(data_dir / subject / "trials.npz") as t:
            image = t["image"].astype(np.int64)
        result[subject] = _gather(subject, lags, results_dir, len(image), image)
    keep = [c for c in ("subject", "lag", "control", "seed", "mean_r", "n_fit", "n_score", "time_total_s")
            if c in table]
    return ReplayResult(result, table[keep].sort_values(["subject", "lag", "control"], ignore_index=True), config)
