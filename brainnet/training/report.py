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


def roi_score_table(results: Mapping[str, object], subject: str, atlas: str = "streams") -> pd.DataFrame:
    """Mean trial-level noise-normalised score (per-vertex ``score``; not the challenge score) per ROI of
    ``atlas`` for each named result, plus the mean noise ceiling (percent, 3 repeats) and vertex count; a
    final "all vertices" row. Columns: roi, n_vertices, noise_ceiling, then one column per result name."""
    rows = None
    for name, res in results.items():
        pv = _per_vertex(res, subject)
        if atlas not in pv:
            raise ValueError(f"atlas {atlas!r} not in the per-vertex table (have {list(pv.columns)})")
        if rows is None:
            rows = pd.DataFrame({"code": pv[atlas], "nc": pv["nc"] * 100})
        rows[name] = pv["score"].to_numpy()
    table = rows[rows["code"] > 0].groupby("code").mean()
    table.insert(0, "n_vertices", rows[rows["code"] > 0].groupby("code").size())
    table = table.rename(columns={"nc": "noise_ceiling"}).reset_index()
    total = rows.drop(columns="code").mean().rename({"nc": "noise_ceiling"})
    total["n_vertices"], total["code"] = len(rows), -1
    table = pd.concat([table, total.to_frame().T], ignore_index=True)
    return table


def name_rois(table: pd.DataFrame, names) -> pd.DataFrame:
    """Replace the ``code`` column by ROI names (``names[code]``; -1 -> "all vertices")."""
    out = table.copy()
    out.insert(0, "roi", [("all vertices" if int(c) < 0 else str(names[int(c)])) for c in out["code"]])
    return out.drop(columns="code")


def ablation_table(fits: Mapping[str, object], subject: str,
                   groups: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One row per ablation: trial-level mean r and mean score over all vertices and over each vertex group
    (e.g. planted kinds from :func:`brainnet.analysis.truth.kind_mask`), and the Algonauts challenge score
    (``challenge_score``: image-averaged, NC from the repeat counts, over the challenge's vertices) when
    the evaluation has it."""
    rows = []
    for name, fit in fits.items():
        pv = _per_vertex(fit, subject)
        row = {"model": name, "mean_r": float(pv["r"].mean()), "mean_score": float(pv["score"].mean())}
        summary = _evaluation(fit, subject).summary
        if "challenge_score" in summary:
            row["challenge_score"] = float(summary["challenge_score"])
        for g, mask in (groups or {}).items():
            mask = np.asarray(mask, bool)
            if mask.any():
                row[f"{g}_r"] = float(pv["r"].to_numpy()[mask].mean())
                row[f"{g}_score"] = float(pv["score"].to_numpy()[mask].mean())
        rows.append(row)
    return pd.DataFrame(rows)
