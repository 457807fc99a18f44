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


def load_state(checkpoint: str | Path | dict) -> dict[str, torch.Tensor]:
    """A model state dict from a Lightning checkpoint (``model.`` prefix removed), a saved state
    dict, or a dict already in memory."""
    ckpt = checkpoint if isinstance(checkpoint, dict) else torch.load(checkpoint, map_location="cpu",
                                                                        weights_only=True)
    if "state_dict" in ckpt:
        return {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return dict(ckpt)


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
