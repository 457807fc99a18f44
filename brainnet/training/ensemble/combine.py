"""Combining the ensemble's predictions per vertex, and scoring single model vs ensemble.

Each run of the recipe predicts the vertices it covers (a whole-brain model: all; a stage-2 run: its
groups). Per vertex, the ensemble's prediction is

* ``"mean"`` (the seed's rule): the plain mean over the runs that cover the vertex;
* ``"val_r"``: the mean weighted by each run's validation r at that vertex (negative r counts 0;
  a vertex where every weight is 0 falls back to the plain mean).

Every partition covers each vertex once, so the plain mean weighs every partition (and every
whole-brain seed) equally, as the seed's average over its 111-model schemes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import TrainConfig
from ..evaluate import EvalResult, SubjectMeta, evaluate_predictions, predict_dataset
from ..metrics import pearson_r
from .recipe import EnsembleRun, soup_or_best

#: Combination rules of :func:`combine_predictions`.
COMBINES: tuple[str, ...] = ("mean", "val_r")


def combine_predictions(preds: Sequence[np.ndarray], covers: Sequence[np.ndarray],
                        weights: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Per-vertex combination of member predictions.

    Parameters
    ----------
    preds : member predictions, each (n, V)
    covers : bool (V,) per member: the vertices it predicts (others are ignored)
    weights : None (plain mean) or per member (V,) weights (e.g. validation r); negative weights count 0,
        vertices whose covering weights are all 0 get the plain mean

    Returns
    -------
    (n, V) float64; NaN at vertices no member covers
    """
    if not preds or len(preds) != len(covers) or (weights is not None and len(weights) != len(preds)):
        raise ValueError("need one cover (and weight) per prediction, and at least one prediction")
    cov = np.stack([np.asarray(c, bool) for c in covers])  # (M, V)
    count = cov.sum(0)
    w = cov.astype(np.float64)
    if weights is not None:
        ww = np.clip(np.stack([np.asarray(x, np.float64) for x in weights]), 0.0, None) * cov
        ok = ww.sum(0) > 0
        w = np.where(ok[None], ww, w)
    total = w.sum(0)
    out = np.zeros(np.asarray(preds[0]).shape, np.float64)
    for p, wm in zip(preds, w):
        out += np.asarray(p, np.float64) * wm[None]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = out / total[None]
    out[:, count == 0] = np.nan
    return out


@dataclass
class MemberPredictions:
    """One run's predictions of one subject: pred (n, V) on the scored split, covered bool (V,),
    val_r (V,) per-vertex r on the validation split."""

    name: str
    pred: np.ndarray
    covered: np.ndarray
    val_r: np.ndarray


def _covered(model, subject: str, n_vertices: int) -> np.ndarray:
    inner = getattr(model, "model", model)
    if hasattr(inner, "covered"):
        return inner.covered(subject).cpu().numpy()
    return np.ones(n_vertices, bool)


def run_predictions(run_dir: str | Path, split: str, features=None) -> tuple[dict, dict]:
    """A run's souped model on ``split`` and on the val split: (subject -> MemberPredictions, subject ->
    evaluate.Predictions of ``split`` (targets, images))."""
    from brainnet.data.prepared import PreparedDataset

    from ..fit import eval_dataset
    from ..run_setup import config_features, load_model

    run_dir = Path(run_dir)
    tc = TrainConfig.load(run_dir / "config.json")
    model = load_model(soup_or_best(run_dir), tc.data_dir)
    if features is None:
        features = config_features(tc, PreparedDataset(tc.data_dir))
    scored = predict_dataset(model, eval_dataset(tc, features, split))
    val = predict_dataset(model, eval_dataset(tc, features, "val"))
    out = {s: MemberPredictions(run_dir.name, p.pred, _covered(model, s, p.pred.shape[1]),
                                pearson_r(val[s].pred, val[s].target)) for s, p in scored.items()}
    return out, scored


@dataclass
class EnsembleScores:
    """Scores of the best whole-brain model and of the ensemble on one split.

    Attributes
    ----------
    summary : DataFrame, one row per (subject, model in "single", "mean", "val_r"): mean_score, mean_r,
        challenge_score (where available)
    evaluation : {(subject, model): EvalResult}
    single : name of the best whole-brain run (by validation r, per subject)
    n_members : runs combined
    """

    summary: pd.DataFrame
    evaluation: dict = field(default_factory=dict)
    single: dict = field(default_factory=dict)
    n_members: int = 0

    def roi_table(self, subject: str, atlas: str = "streams") -> pd.DataFrame:
        """Per ROI of ``atlas``: roi, n_vertices, noise_ceiling (percent) and the mean score of each model
        (columns single / mean / val_r), the table :func:`brainnet.plotting.plot_score_bars` draws."""
        cols: dict = {}
        for (s, kind), ev in self.evaluation.items():
            if s == subject:
                t = ev.roi_table[ev.roi_table["atlas"] == atlas].set_index("roi")
                cols.setdefault("n_vertices", t["n_vertices"])
                cols.setdefault("noise_ceiling", t["mean_nc"])
                cols[kind] = t["mean_score"]
        return pd.DataFrame(cols).rename_axis("roi").reset_index()


def evaluate_ensemble(run: EnsembleRun, split: str = "heldout", features=None) -> EnsembleScores:
    """Score the best whole-brain model (by mean validation r) and both combinations on ``split``."""
    members: dict[str, list[MemberPredictions]] = {}
    targets: dict = {}
    whole = {str(d) for d in run.whole_dirs}
    singles: dict[str, tuple[float, MemberPredictions]] = {}
    for spec in run.specs:
        preds, scored = run_predictions(spec.out_dir, split, features)
        for s, mp in preds.items():
            members.setdefault(s, []).append(mp)
            targets.setdefault(s, scored[s])
            if str(spec.out_dir) in whole:
                vr = float(np.mean(mp.val_r))
                if s not in singles or vr > singles[s][0]:
                    singles[s] = (vr, mp)
    rows, evaluation = [], {}
    data_dir = run.specs[0].config.data_dir
    for s, mps in members.items():
        meta = SubjectMeta.load(data_dir, s)
        t = targets[s]
        combos = {"single": singles[s][1].pred,
                  "mean": combine_predictions([m.pred for m in mps], [m.covered for m in mps]),
                  "val_r": combine_predictions([m.pred for m in mps], [m.covered for m in mps],
                                               [m.val_r for m in mps])}
        for kind, pred in combos.items():
            ev: EvalResult = evaluate_predictions(pred, t.target, meta, t.image)
            evaluation[(s, kind)] = ev
            rows.append({"subject": s, "model": kind, **{k: ev.summary[k] for k in
                                                         ("mean_score", "mean_r", "challenge_score")
                                                         if k in ev.summary}})
    return EnsembleScores(pd.DataFrame(rows), evaluation, {s: v[1].name for s, v in singles.items()},
                          len(run.specs))
