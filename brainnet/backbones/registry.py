"""Backbone registry in timm's style: ``register_backbone``, ``create_backbone``, ``list_backbones``.

Names map to factories ``factory(pretrained, weights, layers, image_size, **kwargs) -> Backbone``:
``pretrained=True`` asks for the published weights (raise WeightsUnavailableError, or ValueError
when there are none, rather than return random ones), ``weights`` is a local checkpoint path, and
neither means random initial weights. The factory sets ``Backbone.weights_source``
(:func:`brainnet.backbones.weights.weights_label`).
A name of the form ``"prefix:model"`` (``timm:resnet18``, ``open_clip:ViT-B-16``) goes to the
factory registered for ``prefix`` with ``model_name="model"``.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .base import RANDOM_WEIGHTS, Backbone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneEntry:
    """One registered backbone: its factory and a one-line description."""

    name: str
    factory: Callable[..., Backbone]
    description: str = ""
    prefix: bool = False  # True: handles "name:model" names


_REGISTRY: dict[str, BackboneEntry] = {}

#: Name suffix asking for a backbone's architecture with random initial weights ("clip-vit-b-16-random").
RANDOM_SUFFIX = "-" + RANDOM_WEIGHTS


def register_backbone(name: str | None = None, *, description: str = "", prefix: bool = False):
    """Decorator registering a factory under ``name`` (default: the function name, '_' -> '-')."""

    def deco(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
        key = name or fn.__name__.replace("_", "-")
        if key in _REGISTRY and _REGISTRY[key].factory is not fn:
            raise ValueError(f"a backbone named {key!r} is already registered")
        doc = description or next(iter((fn.__doc__ or "").strip().splitlines()), "")
        _REGISTRY[key] = BackboneEntry(key, fn, doc, prefix)
        return fn

    return deco


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching a shell-style ``pattern``, sorted.

    Prefix entries appear as ``"prefix:<model>"``.
    """
    names = [f"{k}:<model>" if e.prefix else k for k, e in _REGISTRY.items()]
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def describe_backbones() -> dict[str, str]:
    """Name -> one-line description of every registered backbone."""
    return {k: e.description for k, e in sorted(_REGISTRY.items())}


def create_backbone(
    name: str,
    weights: str | os.PathLike | None = None,
    layers: int | Sequence[int] | None = None,
    image_size: int | None = None,
    **kwargs,
) -> Backbone:
    """Build a registered backbone, frozen and in eval mode, with its published weights by default.

    Args:
        name: a name from :func:`list_backbones`, or ``"prefix:model"`` for prefix entries. A name
            ending in ``"-random"`` (``"clip-vit-b-16-random"``) asks for random initial weights.
        weights: None = the backbone's published weights (the shipped ones for ``brainnet-tiny``):
            when they are neither cached nor downloadable, WeightsUnavailableError is raised at
            once, never a random tower; ``"random"`` = random initial weights (as a ``-random``
            name); anything else = path of a local checkpoint (state_dict) to load (it wins over
            a ``-random`` name).
        layers: None = all taps, int n = the last n, or a list of tap indices (negatives allowed).
        image_size: input side in pixels (default: the backbone's own).
        **kwargs: passed to the factory (architecture overrides, hub directories, ...).

    The result's ``weights_id`` names the weights ("open_clip:ViT-B-16/datacomp_l_s1b_b8k",
    "file:<sha256[:12]>", "random:<digest[:12]>", ...).
    """
    if not isinstance(name, str):
        raise TypeError(f"backbone name must be a str, got {type(name).__name__}")
    if "pretrained" in kwargs:
        raise TypeError("create_backbone takes no pretrained=: published weights load by default; ask for random "
                        f"ones with weights={RANDOM_WEIGHTS!r} or the name {name + RANDOM_SUFFIX!r}")
    if weights is not None:
        weights = str(weights)
    if name not in _REGISTRY and name.endswith(RANDOM_SUFFIX):
        # "<name>-random": the same architecture with random initial weights, asked for by name
        # (a checkpoint given as weights= still wins, as for the registered brainnet-tiny-random)
        name, weights = name[: -len(RANDOM_SUFFIX)], weights or RANDOM_WEIGHTS
    if weights == RANDOM_WEIGHTS and name + RANDOM_SUFFIX in _REGISTRY:
        name, weights = name + RANDOM_SUFFIX, None  # a registered random twin (brainnet-tiny-random)
    random = weights == RANDOM_WEIGHTS or name.endswith(RANDOM_SUFFIX)
    path = None if weights in (None, RANDOM_WEIGHTS) else weights
    entry = _REGISTRY.get(name)
    if entry is None and ":" in name:
        head, model_name = name.split(":", 1)
        entry = _REGISTRY.get(head)
        if entry is not None and entry.prefix:
            kwargs["model_name"] = model_name
        else:
            entry = None
    if entry is None:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"unknown backbone {name!r}.{hint} Known: {list_backbones()}")
    published = path is None and not random
    bb = entry.factory(pretrained=published, weights=path, layers=layers, image_size=image_size, **kwargs)
    if published and bb.weights_source == RANDOM_WEIGHTS:  # a factory must raise rather than do this
        raise RuntimeError(f"backbone {name!r} was asked for its published weights but came back random")
    log.debug("backbone %s: weights %s, %d px input, layers %s", name, bb.weights_source, bb.input_config.size,
              list(bb.layer_names))
    return bb.freeze()
