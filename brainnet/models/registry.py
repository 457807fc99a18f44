"""Model registry in the backbone registry's style: ``register_model``, ``create_model``, ``list_models``.

A name maps to a :class:`ModelEntry`: the model class, its config class, how to build it for a
set of subjects' vertices and (optionally) how to configure it from cached token shapes, which
is what :func:`brainnet.training.fit.fit_encoder` calls with ``TrainConfig.model``:

>>> cfg = model_entry("mem").configure(features, {"width": 32}, "no_time")
>>> model = create_model("mem", cfg, coords, hemi)     # coords: subject -> (V_s, 3)
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from .configs import DictConfig

#: ``build(config, coords, hemi) -> model``; coords: subject -> (V_s, 3), hemi: subject -> (V_s,).
Builder = Callable[[Any, Mapping, Mapping], nn.Module]
#: ``configure(features, options, variant) -> config``: ``features`` has ``in_channels``,
#: ``layer_names`` and ``memory_dim`` (a :class:`brainnet.training.batches.FeatureSet`),
#: ``options`` overrides config fields, ``variant`` names a variant (an ablation row, "full").
Configurer = Callable[[Any, Mapping[str, Any], str], DictConfig]
#: ``inputs(variant) -> {input: what reads it}``: the prepared-dataset inputs beyond images and fMRI
#: (names of :attr:`brainnet.data.PreparedDataset.inputs`, e.g. ``"memory"``, ``"behaviour"``) that a
#: variant reads; checked before training (:func:`brainnet.training.run_setup.check_inputs`).
InputsOf = Callable[[str], Mapping[str, str]]


@dataclass(frozen=True)
class ModelEntry:
    """One registered model."""

    name: str
    model_class: type[nn.Module]
    config_class: type[DictConfig]
    build: Builder
    configure: Configurer | None = None
    description: str = ""
    inputs: InputsOf | None = None

    def inputs_of(self, variant: str = "full") -> dict[str, str]:
        """The dataset inputs (beyond images and fMRI) that ``variant`` reads: name -> what reads it
        (empty for a model registered without ``inputs``, i.e. one reading the current image only)."""
        return dict(self.inputs(variant)) if self.inputs is not None else {}

    def config_default(self, field: str, default: Any = None) -> Any:
        """Default of a config field (``default`` when the config has no such field)."""
        for f in dataclasses.fields(self.config_class):
            if f.name == field:
                return f.default
        return default


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, model_class: type[nn.Module], config_class: type[DictConfig], *,
                   build: Builder | None = None, configure: Configurer | None = None,
                   description: str = "", inputs: InputsOf | None = None) -> ModelEntry:
    """Register a model under ``name``.

    Parameters
    ----------
    model_class, config_class : the model (an :class:`~brainnet.models.EncodingModel`) and its
        config dataclass
    build : ``build(config, coords, hemi) -> model``; default ``model_class(config, coords, hemi)``
    configure : ``configure(features, options, variant) -> config`` (see :data:`Configurer`);
        None: the model cannot be configured from cached tokens (``fit_encoder`` refuses it)
    description : one line (default: the first line of the model's docstring)
    inputs : ``inputs(variant) -> {input: what reads it}`` (see :data:`InputsOf`); None: the model
        reads the current image only
    """
    if name in _REGISTRY and _REGISTRY[name].model_class is not model_class:
        raise ValueError(f"a model named {name!r} is already registered")
    doc = description or next(iter((model_class.__doc__ or "").strip().splitlines()), "")
    entry = ModelEntry(name, model_class, config_class, build or model_class, configure, doc, inputs)
    _REGISTRY[name] = entry
    return entry


def list_models(pattern: str = "*", configurable: bool = False) -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted; ``configurable=True``:
    only those with a ``configure`` (what ``TrainConfig.model`` / ``fit_encoder`` can train)."""
    return sorted(n for n, e in _REGISTRY.items()
                  if fnmatch.fnmatch(n, pattern) and (e.configure is not None or not configurable))


def describe_models() -> dict[str, str]:
    """Name -> one-line description of every registered model."""
    return {k: e.description for k, e in sorted(_REGISTRY.items())}


def model_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` of ``name`` (ValueError with close matches when unknown)."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    entry = _REGISTRY.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Known: {list_models()}")
    return entry


def create_model(name: str, config: DictConfig | Mapping[str, Any] | None, coords: Mapping,
                 hemi: Mapping) -> nn.Module:
    """Build a registered model for the subjects' vertices.

    Parameters
    ----------
    name : a name from :func:`list_models`
    config : the model's config, its dict (e.g. from a checkpoint; older dicts are upgraded, see
        :meth:`DictConfig.from_dict`), or None for the defaults
    coords : mapping subject -> array of shape (V_s, 3), fsaverage sphere coordinates
    hemi : mapping subject -> array of shape (V_s,), 0 left / 1 right
    """
    entry = model_entry(name)
    if config is None:
        config = entry.config_class()
    elif isinstance(config, Mapping):
        config = entry.config_class.from_dict(config)
    elif not isinstance(config, entry.config_class):
        raise TypeError(f"model {name!r} needs a {entry.config_class.__name__}, got {type(config).__name__}")
    return entry.build(config, coords, hemi)
