"""Backbone registry in timm's style: ``register_backbone``, ``create_backbone``, ``list_backbones``.

Names map to factories ``factory(pretrained, weights, layers, image_size, **kwargs) -> Backbone``.
A name of the form ``"prefix:model"`` (``timm:resnet18``, ``open_clip:ViT-B-16``) goes to the
factory registered for ``prefix`` with ``model_name="model"``.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .base import Backbone

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
RANDOM_SUFFIX = "-random"


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
    pretrained: bool = False,
    weights: str | None = None,
    layers: int | Sequence[int] | None = None,
    image_size: int | None = None,
    **kwargs,
) -> Backbone:
    """Build a registered backbone, frozen and in eval mode.

    Args:
        name: a name from :func:`list_backbones`, or ``"prefix:model"`` for prefix entries.
        pretrained: load the published weights (raises WeightsUnavailableError at once when they
            are not cached locally and cannot be downloaded).
        weights: path of a local checkpoint (state_dict) to load instead; wins over ``pretrained``.
        layers: None = all taps, int n = the last n, or a list of tap indices (negatives allowed).
        image_size: input side in pixels (default: the backbone's own).
        **kwargs: passed to the factory (architecture overrides, hub directories, ...).
    """
    if not isinstance(name, str):
        raise TypeError(f"backbone name must be a str, got {type(name).__name__}")
    if name not in _REGISTRY and name.endswith(RANDOM_SUFFIX):
        # "<name>-random": the same architecture with random initial weights, asked for by name
        name, pretrained, weights = name[: -len(RANDOM_SUFFIX)], False, None
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
    if weights is not None:
        weights = str(weights)
    bb = entry.factory(pretrained=bool(pretrained), weights=weights, layers=layers, image_size=image_size, **kwargs)
    log.debug("backbone %s: %s weights, %d px input, layers %s", name,
              weights or ("pretrained" if pretrained else "initial"), bb.input_config.size, list(bb.layer_names))
    return bb.freeze()
