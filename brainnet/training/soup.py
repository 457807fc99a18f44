"""Greedy model soup: average the weights of the checkpoints that help on validation.

Checkpoints are scored alone and sorted best first; the soup starts as the best one, and each
next checkpoint joins (uniform weight average over the members) only if the averaged model
scores strictly higher. The soup therefore never scores below its best member.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .metrics import pearson_r
from .run_setup import model_state


def load_state(checkpoint: str | Path | dict) -> dict[str, torch.Tensor]:
    """A model state dict from a Lightning checkpoint (``model.`` prefix removed), a saved state
    dict, or a dict already in memory."""
    ckpt = checkpoint if isinstance(checkpoint, dict) else torch.load(checkpoint, map_location="cpu",
                                                                        weights_only=True)
    return model_state(ckpt) if "state_dict" in ckpt else dict(ckpt)


def average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Uniform average of floating-point tensors; other entries (counters) come from the first."""
    if not states:
        raise ValueError("need at least one state dict")
    keys = list(states[0])
    for s in states[1:]:
        if list(s) != keys:
            raise ValueError("state dicts have different keys: checkpoints of different models?")
    out = {}
    for k in keys:
        t0 = states[0][k]
        if torch.is_floating_point(t0):
            out[k] = torch.stack([s[k].to(torch.float64) for s in states]).mean(0).to(t0.dtype)
        else:
            out[k] = t0.clone()
    return out


def validation_scorer(dataset, batch_size: int = 64) -> Callable[[torch.nn.Module], float]:
    """``score(model)`` = mean over subjects of the mean per-vertex Pearson r on ``dataset``."""
    from .evaluate import predict_dataset

    def score(model: torch.nn.Module) -> float:
        preds = predict_dataset(model, dataset, batch_size)
        return float(np.mean([pearson_r(p.pred, p.target).mean() for p in preds.values()]))

    return score


@dataclass
class SoupResult:
    """model: holds the soup's weights; members: checkpoints in the soup; score: its validation
    score; member_scores: each checkpoint's own score (best first); steps: one row per tried
    checkpoint (checkpoint, score_alone, soup_score_if_added, accepted)."""

    model: torch.nn.Module
    members: list
    score: float
    member_scores: dict
    steps: list = field(default_factory=list)


def greedy_soup(model: torch.nn.Module, checkpoints: Sequence, score: Callable[[torch.nn.Module], float]) -> SoupResult:
    """Greedy soup over ``checkpoints`` (paths or state dicts), scored by ``score(model)`` (higher is
    better, e.g. :func:`validation_scorer`). ``model`` is the architecture; it ends up holding the soup."""
    if not checkpoints:
        raise ValueError("need at least one checkpoint")
    states = [load_state(c) for c in checkpoints]
    names = [str(c) if not isinstance(c, dict) else f"state{i}" for i, c in enumerate(checkpoints)]
    alone = []
    for st in states:
        model.load_state_dict(st)
        alone.append(float(score(model)))
    order = np.argsort(alone, kind="stable")[::-1]
    soup = [int(order[0])]
    best = alone[soup[0]]
    steps = [{"checkpoint": names[soup[0]], "score_alone": best, "soup_score_if_added": best, "accepted": True}]
    for i in order[1:]:
        model.load_state_dict(average_states([states[j] for j in soup + [int(i)]]))
        s = float(score(model))
        accepted = s > best
        steps.append({"checkpoint": names[i], "score_alone": alone[i], "soup_score_if_added": s, "accepted": accepted})
        if accepted:
            soup.append(int(i))
            best = s
    model.load_state_dict(average_states([states[j] for j in soup]))
    return SoupResult(model, [names[j] for j in soup], best, {names[j]: alone[j] for j in order}, steps)


#: Entries of a Lightning checkpoint that describe the model (copied into a soup checkpoint).
_MODEL_KEYS = ("train_config", "model_config", "model_kind", "adapt_config", "backbone_fingerprint", "t1_fingerprint")


def soup_checkpoints(model: torch.nn.Module, candidates: Sequence[tuple[str, float]], val_dataset,
                     path: str | Path, batch_size: int = 64) -> dict:
    """Greedy soup of a run's best checkpoints, scored on the validation split; saved to ``path``.

    Parameters
    ----------
    model : the run's architecture (CPU); it ends up holding the soup's weights
    candidates : (checkpoint path, logged val r) of the checkpoints to soup, best first
    val_dataset : the validation :class:`~brainnet.training.batches.EncodingDataset` (never the scored split)
    path : where the soup is written: a checkpoint readable by :func:`brainnet.training.fit.load_model`
        and by ``torch.load(path, weights_only=True)``: ``state_dict`` (``model.``-prefixed), the model
        entries of the best candidate's checkpoint, and ``soup`` (the returned record)

    Returns
    -------
    record: candidates ([name, val r] with file names), members (names of the checkpoints in the soup),
    soup_val_r, best_single_val_r (the best candidate's score, same scorer), steps (see :class:`SoupResult`).
    A soup file made from the same candidates is reused, not recomputed (a resumed run that trained no
    further steps gets the same soup).
    """
    path = Path(path)
    names = [[Path(p).name, float(r)] for p, r in candidates]
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("soup", {}).get("candidates") == names:
            model.load_state_dict(load_state(saved))
            return saved["soup"]
    paths = [str(p) for p, _ in candidates]
    res = greedy_soup(model, paths, validation_scorer(val_dataset, batch_size))
    record = {"candidates": names, "members": [Path(m).name for m in res.members], "soup_val_r": res.score,
              "best_single_val_r": max(res.member_scores.values()),
              "steps": [{**st, "checkpoint": Path(st["checkpoint"]).name} for st in res.steps]}
    best = torch.load(paths[0], map_location="cpu", weights_only=True)
    out = {k: best[k] for k in _MODEL_KEYS if k in best}
    out["state_dict"] = {f"model.{k}": v for k, v in res.model.state_dict().items()}
    out["soup"] = record
    torch.save(out, path)
    return record


def member_scores(model: torch.nn.Module, dataset, batch_size: int = 64, whole: list | None = None) -> np.ndarray:
    """Validation score of each member of a :class:`~brainnet.models.MemEnsemble` in one pass: (M,) float64,
    per member the mean over subjects of the mean per-vertex Pearson r on the member's own vertices
    (a subject where the member covers no vertex is left out; NaN if it covers none anywhere).
    ``whole``: a list the whole model's score (as :func:`validation_scorer`) is appended to."""
    from .evaluate import predict_dataset

    preds = predict_dataset(model, dataset, batch_size)
    per: list[list[float]] = [[] for _ in range(model.n_members)]
    means = []
    for s, p in preds.items():
        r = pearson_r(p.pred, p.target)
        means.append(float(r.mean()))
        owner = model.owner(s).cpu().numpy()
        for m in range(model.n_members):
            if (owner == m).any():
                per[m].append(float(r[owner == m].mean()))
    if whole is not None:
        whole.append(float(np.mean(means)))
    return np.array([np.mean(x) if x else np.nan for x in per])


def greedy_member_soups(model: torch.nn.Module, checkpoints: Sequence, dataset, batch_size: int = 64,
                        top: int | None = None) -> dict:
    """A greedy soup per member of a :class:`~brainnet.models.MemEnsemble`, each ranked and accepted by that
    member's own validation score (:func:`member_scores`): as :func:`greedy_soup` run for every member
    alone, the members' trials of one round scored together in one prediction pass (K passes for K
    checkpoints, as one joint soup). ``top``: each member tries only its own ``top`` best checkpoints
    (None: all). ``model`` ends up holding every member's soup.

    Returns ``members`` (M lists of checkpoint names in the member's soup), ``scores`` (M soup scores),
    ``alone`` (K x M: each checkpoint's score per member), ``tried`` (per round after the first: M scores of
    each member's soup with its next checkpoint added, accepted or not), ``names`` (K), ``whole_alone``
    (K: each checkpoint's whole-model score), ``whole`` (the soups' whole-model score)."""
    if not checkpoints:
        raise ValueError("need at least one checkpoint")
    names = [str(c) if not isinstance(c, dict) else f"state{i}" for i, c in enumerate(checkpoints)]
    n = model.n_members
    parts = []  # parts[k][m]: member m's weights in checkpoint k
    alone, whole_alone = [], []
    for c in checkpoints:
        model.load_state_dict(load_state(c))
        parts.append([model.member_state(m) for m in range(n)])
        alone.append(member_scores(model, dataset, batch_size, whole_alone))
    alone_arr = np.array(alone)  # (K, M)
    orders = [np.argsort(np.nan_to_num(alone_arr[:, m], nan=-np.inf), kind="stable")[::-1][:top] for m in range(n)]
    soups = [[int(o[0])] for o in orders]
    best = [float(alone_arr[o[0], m]) for m, o in enumerate(orders)]

    def load(chosen: list[list[int]]) -> None:
        for m, ks in enumerate(chosen):
            model.load_member_state(m, average_states([parts[k][m] for k in ks]))

    tried = []  # per round: each member's score with its next checkpoint added
    for i in range(1, len(orders[0])):
        trial = [soup + [int(o[i])] for soup, o in zip(soups, orders)]
        load(trial)
        scores = member_scores(model, dataset, batch_size)
        tried.append(scores.tolist())
        for m in range(n):
            if scores[m] > best[m]:
                soups[m], best[m] = trial[m], float(scores[m])
    load(soups)
    whole = [whole_alone[int(orders[0][0])]] if all(len(ks) == 1 and ks[0] == soups[0][0] for ks in soups) else []
    if not whole:
        member_scores(model, dataset, batch_size, whole)
    return {"members": [[names[k] for k in ks] for ks in soups], "scores": best, "alone": alone_arr.tolist(),
            "names": names, "whole_alone": whole_alone, "whole": whole[0], "tried": tried}


def soup_members_checkpoints(model: torch.nn.Module, candidates: Sequence[tuple[str, float]], val_dataset,
                             path: str | Path, top: int | None = None, batch_size: int = 64) -> dict:
    """:func:`soup_checkpoints` for a :class:`~brainnet.models.MemEnsemble`: each member souped from the
    candidates (e.g. all the run's kept checkpoints) by its own validation score, each from its own ``top``
    best of them (:func:`greedy_member_soups`), saved to ``path`` in the same
    format. The record has soup_val_r / best_single_val_r (the whole model's score, as
    :func:`validation_scorer`), ``members`` (names in any member's soup) and ``per_member`` (per member:
    checkpoint names, soup score, score_if_added (its soup's score each time a next checkpoint was tried:
    below the best single one = soup collapse), best single checkpoint's score)."""
    path = Path(path)
    names = [[Path(p).name, float(r)] for p, r in candidates]
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("soup", {}).get("candidates") == names and saved["soup"].get("top") == top:
            model.load_state_dict(load_state(saved))
            return saved["soup"]
    paths = [str(p) for p, _ in candidates]
    res = greedy_member_soups(model, paths, val_dataset, batch_size, top)
    alone = np.array(res["alone"])
    per_member = [{"checkpoints": [Path(c).name for c in ms], "soup_score": s,
                   "score_if_added": [t[m] for t in res["tried"]],
                   "best_single_score": float(np.nanmax(alone[:, m])) if np.isfinite(alone[:, m]).any() else None}
                  for m, (ms, s) in enumerate(zip(res["members"], res["scores"]))]
    used = sorted({c for pm in per_member for c in pm["checkpoints"]})
    record = {"candidates": names, "members": used, "soup_val_r": res["whole"],
              "best_single_val_r": max(res["whole_alone"]), "per_member": per_member, "top": top}
    best = torch.load(paths[0], map_location="cpu", weights_only=True)
    out = {k: best[k] for k in _MODEL_KEYS if k in best}
    out["state_dict"] = {f"model.{k}": v for k, v in model.state_dict().items()}
    out["soup"] = record
    torch.save(out, path)
    return record
