"""Tables comparing fitted encoding models and baselines on the same vertices (notebook 02).

Their figures are in :mod:`brainnet.plotting.training`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def _evaluation(result, subject: str):
    """EvalResult of a FitResult (``.evaluation[subject]``) or a BaselineResult."""
    if hasattr(result, "evaluation") and isinstance(result.evaluation, dict):
        return result.evaluation[subject]
    return result.evaluation


def _per_vertex(result, subject: str) -> pd.DataFrame:
    """Per-vertex table of a FitResult or a BaselineResult."""
    return _evaluation(result, subject).per_vertex


def score_column(per_vertex: pd.DataFrame) -> str:
    """The per-vertex score column of an evaluation: ``"score"`` (noise-normalised), or ``"r"`` where the
    dataset has no noise ceiling."""
    return "score" if "score" in per_vertex else "r"


def roi_score_table(results: Mapping[str, object], subject: str, atlas: str = "streams") -> pd.DataFrame:
    """Mean trial-level noise-normalised score (per-vertex ``score``; not the challenge score; Pearson r
    where the dataset has no noise ceiling) per ROI of ``atlas`` for each named result, plus the mean
    noise ceiling (percent, 3 repeats; left out without one) and vertex count; a final "all vertices" row.
    Columns: roi, n_vertices, noise_ceiling, then one column per result name; ``table.attrs["score"]``
    names the score ("score" or "r")."""
    rows, column = None, None
    for name, res in results.items():
        pv = _per_vertex(res, subject)
        if atlas not in pv:
            raise ValueError(f"atlas {atlas!r} not in the per-vertex table (have {list(pv.columns)})")
        if rows is None:
            column = score_column(pv)
            rows = pd.DataFrame({"code": pv[atlas]})
            if "nc" in pv:
                rows["nc"] = pv["nc"] * 100
        if score_column(pv) != column:
            raise ValueError(f"{name} is scored by {score_column(pv)!r}, the others by {column!r}")
        rows[name] = pv[column].to_numpy()
    table = rows[rows["code"] > 0].groupby("code").mean()
    table.insert(0, "n_vertices", rows[rows["code"] > 0].groupby("code").size())
    table = table.rename(columns={"nc": "noise_ceiling"}).reset_index()
    total = rows.drop(columns="code").mean().rename({"nc": "noise_ceiling"})
    total["n_vertices"], total["code"] = len(rows), -1
    table = pd.concat([table, total.to_frame().T], ignore_index=True)
    table.attrs["score"] = column
    return table


def name_rois(table: pd.DataFrame, names) -> pd.DataFrame:
    """Replace the ``code`` column by ROI names (``names[code]``; -1 -> "all vertices")."""
    out = table.copy()
    out.insert(0, "roi", [("all vertices" if int(c) < 0 else str(names[int(c)])) for c in out["code"]])
    return out.drop(columns="code")


def ablation_table(fits: Mapping[str, object], subject: str,
                   groups: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One row per ablation: trial-level mean r, r² and (with a noise ceiling) mean score over all vertices
    and over each vertex group (e.g. planted kinds from :func:`brainnet.analysis.truth.kind_mask`), and the
    image-averaged ``challenge_mean_r`` and Algonauts challenge score (``challenge_score``: NC from the
    repeat counts, over the challenge's vertices) when the evaluation has them."""
    rows = []
    for name, fit in fits.items():
        pv = _per_vertex(fit, subject)
        cols = ("r", "r2", "score") if "score" in pv else ("r", "r2")
        row = {"model": name, **{f"mean_{c}": float(pv[c].mean()) for c in cols}}
        summary = _evaluation(fit, subject).summary
        row.update({k: float(summary[k]) for k in ("challenge_mean_r", "challenge_score") if k in summary})
        for g, mask in (groups or {}).items():
            mask = np.asarray(mask, bool)
            if mask.any():
                row.update({f"{g}_{c}": float(pv[c].to_numpy()[mask].mean()) for c in cols})
        rows.append(row)
    return pd.DataFrame(rows)
