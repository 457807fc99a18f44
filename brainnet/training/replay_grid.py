"""Memory replay, the grid: one lag model per (subject, lag, real | control), scored per vertex.

:func:`replay_trial` is one grid cell (a Ray Tune trainable: ``config`` dict in, metrics out;
its arrays go to ``results_dir``): the design of :func:`brainnet.analysis.replay_design.lag_trials`,
a fit of :mod:`brainnet.training.replay_fit`, the scores of :mod:`brainnet.training.metrics` and
:mod:`brainnet.analysis.memory_replay`. :func:`run_replay` runs the subject x lag x {real,
control} grid through :func:`brainnet.training.grid.run_grid` (``use_ray=True``) or in this
process over the same function with the same per-cell seeds (``use_ray=False``), and gathers a
:class:`~brainnet.analysis.replay_results.ReplayResult`. The prepared data are read through
:class:`brainnet.data.PreparedDataset`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from brainnet.analysis.memory_replay import per_trial_products
from brainnet.analysis.replay_design import lag_trials
from brainnet.analysis.replay_results import ReplayResult, SubjectReplay
from brainnet.data.prepared import PreparedDataset

from .metrics import pearson_r
from .replay_fit import ReplayConfig, ReplayFeatures, fit_ridge

log = logging.getLogger(__name__)

__all__ = ["CONDITIONS", "gather_subject", "replay_trial", "result_file", "run_replay"]

CONDITIONS = ("real", "control")


def result_file(results_dir: str | os.PathLike, subject: str, lag: int, control: bool) -> Path:
    """Where :func:`replay_trial` writes one cell's arrays."""
    return Path(results_dir) / f"{subject}_lag{int(lag):02d}_{CONDITIONS[int(bool(control))]}.npz"


def replay_trial(config: Mapping) -> dict:
    """One grid cell (see :func:`_replay_cell`), with BLAS / torch limited to ``config["threads"]``
    threads (default 1: the grid's parallelism is over cells; many BLAS threads per cell on a
    shared machine slow everything down)."""
    from threadpoolctl import threadpool_limits

    threads = int(config.get("threads") or 1)
    if dict(config.get("replay", {})).get("model", "ridge") == "ridge":  # no torch threads to set
        with threadpool_limits(threads):
            return _replay_cell(config)
    from brainnet.cache.staging import torch_threads

    with torch_threads(threads), threadpool_limits(threads):
        return _replay_cell(config)


def _cached(out: Path, stamp: str) -> dict | None:
    if not out.is_file():
        return None
    with np.load(out) as z:
        if str(z["config"]) != stamp:
            return None
        return {"mean_r": float(np.mean(z["r"])), "n_fit": int(z["fit"].sum()), "n_score": int(z["score"].sum()),
                "result_file": str(out)}


def _replay_cell(config: Mapping) -> dict:
    """One grid cell: fit the lag model of (subject, lag, control), score it, save its arrays.

    ``config`` keys: ``data_dir``, ``features_path`` (:meth:`ReplayFeatures.save`),
    ``results_dir``, ``subject``, ``lag``, ``control`` (bool), ``seed`` (shuffle / inner folds /
    init), ``groups_paths`` (optional {subject: npz of group name -> vertex index array};
    per-trial products are computed for each group), ``replay`` (a :meth:`ReplayConfig.to_dict`),
    ``threads``. A cell whose result file exists with the same config is not recomputed.

    Saved (:func:`result_file`): ``r`` float32 (V,) per-vertex r on the scored trials;
    ``products`` float64 (n_groups, n_trials) per-trial products (NaN where not scored);
    ``group_names``; ``score`` / ``fit`` bool (n_trials,); ``alpha`` (V,) (ridge, else NaN);
    ``config`` (JSON). Returns ``mean_r``, ``n_fit``, ``n_score``, ``result_file``.
    """
    cfg = ReplayConfig.from_dict(dict(config.get("replay", {})))
    subject, lag, control = str(config["subject"]), int(config["lag"]), bool(config["control"])
    seed = int(config.get("seed", 0))
    out = result_file(config["results_dir"], subject, lag, control)
    stamp = json.dumps({k: config[k] for k in sorted(config) if k != "threads"}, sort_keys=True, default=str)
    cached = _cached(out, stamp)
    if cached is not None:
        return cached
    subj = PreparedDataset(config["data_dir"]).subject(subject)
    features = ReplayFeatures.load(config["features_path"])
    rows, fit, score = lag_trials(subj.memory_index, subj.split, subj.trials["session"], subj.image, lag,
                                  control=control, seed=seed, fit_splits=cfg.fit_splits, score_splits=cfg.score_splits)
    if fit.sum() < 10 or score.sum() < 4:
        raise ValueError(f"{subject} lag {lag}: too few trials ({fit.sum()} fit, {score.sum()} scored)")
    y_fit = np.asarray(subj.fmri[np.flatnonzero(fit)], dtype=np.float32)
    y_score = np.asarray(subj.fmri[np.flatnonzero(score)], dtype=np.float64)
    alpha = np.full(y_fit.shape[1], np.nan)
    if cfg.model == "ridge":
        ridge = fit_ridge(features.vectors[rows[fit]], y_fit, cfg.alphas, rows[fit], cfg.inner_folds, seed)
        pred = np.asarray(ridge.predict(features.vectors[rows[score]]), dtype=np.float64)
        alpha = np.asarray(ridge.best_alphas_)
    else:
        from .replay_mlp import fit_mlp

        pred = fit_mlp(features, rows[fit], y_fit, rows[score], cfg, seed, subject).astype(np.float64)
    r = pearson_r(pred, y_score)
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


def gather_subject(subject: str, lags: Sequence[int], results_dir: str | os.PathLike,
                   image: np.ndarray) -> SubjectReplay:
    """Read one subject's cells (real and control, every lag) into a :class:`SubjectReplay`;
    ``image`` (n_trials,) is the subject's current image per trial."""
    n_trials = len(image)
    r, products = None, {}
    n_fit, n_score = np.zeros((2, len(lags)), int), np.zeros((2, len(lags)), int)
    for c in range(2):
        for k, lag in enumerate(lags):
            with np.load(result_file(results_dir, subject, lag, bool(c))) as z:
                if r is None:
                    r = np.zeros((2, len(lags), len(z["r"])), np.float32)
                r[c, k] = z["r"]
                for g, name in enumerate(z["group_names"]):
                    products.setdefault(str(name), np.full((2, len(lags), n_trials), np.nan))[c, k] = z["products"][g]
                n_fit[c, k], n_score[c, k] = int(z["fit"].sum()), int(z["score"].sum())
    return SubjectReplay(subject, np.asarray(lags), r, products, np.asarray(image, np.int64), n_fit, n_score)


def run_replay(
    data,
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
    data : prepared dataset (path or :class:`~brainnet.data.PreparedDataset`); subjects : e.g.
        ``["subj01"]``; lags : e.g. ``range(17)``.
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
    from .grid import grid_search, run_grid, trial_seed

    config = config or ReplayConfig()
    dataset = PreparedDataset.open(data)
    out = Path(out_dir).resolve()
    root = out / name
    results_dir = root / "arrays"
    results_dir.mkdir(parents=True, exist_ok=True)
    lags = [int(k) for k in lags]
    subjects = [dataset.subject(s).name for s in subjects]
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
    base = {"data_dir": str(Path(dataset.root).resolve()), "features_path": str(features_path),
            "results_dir": str(results_dir), "replay": config.to_dict(), "threads": int(threads)}
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
    log.info("memory replay: %d cells in %s", len(table), results_dir)
    result = {s: gather_subject(s, lags, results_dir, dataset.subject(s).image) for s in subjects}
    keep = [c for c in ("subject", "lag", "control", "seed", "mean_r", "n_fit", "n_score", "time_total_s")
            if c in table]
    return ReplayResult(result, table[keep].sort_values(["subject", "lag", "control"], ignore_index=True), config)
