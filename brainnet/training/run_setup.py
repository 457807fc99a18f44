"""Building what a run needs from its :class:`TrainConfig`: the model and its config, the backbone,
the cached features, the adapter settings; rebuilding a trained model from its checkpoint."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from brainnet.data.prepared import PreparedDataset
from brainnet.errors import MissingInputError
from brainnet.models import AdaptConfig, BackboneInLoop, create_model, model_entry

from .batches import FeatureSet, subject_vertices
from .config import TrainConfig
from .evaluate import check_scored_split
from .features import build_features, resolve_backbone

logger = logging.getLogger(__name__)


def config_inputs(config: TrainConfig) -> dict[str, str]:
    """The prepared-dataset inputs beyond images and fMRI that a run of ``config`` reads: name (of
    :attr:`brainnet.data.PreparedDataset.inputs`) -> what reads it. The model's variant decides
    (:meth:`brainnet.models.registry.ModelEntry.inputs_of`); a T-1 backbone reads the previous trial's
    image (``"memory"``)."""
    needs = model_entry(config.model).inputs_of(config.ablation)
    if config.t1_backbone:
        needs.setdefault("memory", f"the T-1 backbone (t1_backbone={config.t1_backbone!r})")
    return needs


def available_variants(data: PreparedDataset, variants, model: str = "mem") -> tuple[list[str], dict[str, list[str]]]:
    """Split ``variants`` of ``model`` (e.g. ablation rows) into those the dataset has every input of, and
    the others -> the inputs it lacks (e.g. on a dataset of the Algonauts release alone only "baseline"
    of the memory model runs)."""
    entry = model_entry(model)
    missing = {v: [n for n in entry.inputs_of(v) if not data.has(n)] for v in variants}
    return [v for v in variants if not missing[v]], {v: m for v, m in missing.items() if m}


def check_inputs(config: TrainConfig, data: PreparedDataset) -> None:
    """Refuse a run whose model reads an input the dataset lacks, or whose ``eval_split`` has no fMRI.

    Raises:
        MissingInputError: naming the dataset, the missing input, what reads it and what to do
            (prepare with the NSD tree, or train the image-only variant / score another split).
    """
    missing = {name: reader for name, reader in config_inputs(config).items() if not data.has(name)}
    if missing:
        what = "; ".join(f"{reader} read {name}" for name, reader in missing.items())
        todo = " train the image-only model (ablation='baseline'), or" if config.model == "mem" else ""
        raise MissingInputError(f"{data.root}: this dataset has no {' and no '.join(missing)} (prepared from the "
                                f"Algonauts 2023 release alone?), but TrainConfig(model={config.model!r}, "
                                f"ablation={config.ablation!r}) needs it: {what}. To run,{todo} prepare the "
                                "dataset from the NSD tree (brainnet prepare --nsd-dir ...)")
    for subject in config.subjects:
        check_scored_split(data, subject, config.eval_split)


def model_config(config: TrainConfig, features: FeatureSet, t1_backbone=None):
    """The model's config dataclass for a TrainConfig and the cached feature shapes (the registered
    model's ``configure``: ``config.model_options`` override fields, ``config.ablation`` picks the variant);
    with ``t1_backbone`` (:func:`t1_in_loop_backbone`), ``t1_input_dim`` is its layer ``config.t1_layer``'s width
    (left at 0 for a variant without the T-1 path, e.g. ablation ``no_memory_images``: that backbone is not used)."""
    entry = model_entry(config.model)
    if entry.configure is None:
        raise ValueError(f"model {config.model!r} cannot be configured from cached tokens; "
                         "build it with brainnet.models.create_model")
    cfg = entry.configure(features, dict(config.model_options), config.ablation)
    if t1_backbone is None:
        return cfg
    if not hasattr(cfg, "t1_input_dim"):
        raise ValueError(f"model {config.model!r} has no T-1 image path for t1_backbone")
    if not cfg.has_t1_path:
        logger.info("ablation %r has no T-1 path: t1_backbone %r is not used", config.ablation, config.t1_backbone)
        return cfg
    pos = -1 if config.t1_layer is None else t1_backbone.select([config.t1_layer])[0]
    return dataclasses.replace(cfg, t1_input_dim=t1_backbone.widths[pos])


def build_model(kind: str, cfg, data_dir: str | Path | PreparedDataset, subjects) -> torch.nn.Module:
    """The registered model ``kind`` (``"mem"``, ``"factortopy"``, see :func:`brainnet.models.list_models`)
    for the subjects' vertices of a prepared dataset."""
    coords, hemi = subject_vertices(data_dir, subjects)
    return create_model(kind, cfg, coords, hemi)


def config_backbone(config: TrainConfig, name: str | None = None):
    """Backbone ``name`` (default ``config.backbone``) at ``config.image_size``; random-init weights
    are drawn with ``config.seed`` (without touching the global RNG), so a checkpoint can rebuild them."""
    kwargs = {} if config.image_size is None else {"image_size": config.image_size}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return resolve_backbone(name or config.backbone, **kwargs)


def in_loop_backbone(config: TrainConfig):
    """The backbone of ``config`` for training in the loop (see :func:`config_backbone`)."""
    return config_backbone(config)


def t1_in_loop_backbone(config: TrainConfig):
    """``config.t1_backbone`` (built as :func:`config_backbone`) for the previous image, or None."""
    return config_backbone(config, config.t1_backbone) if config.t1_backbone else None


def config_features(config: TrainConfig, data: PreparedDataset, backbone=None) -> FeatureSet:
    """Cached features of a TrainConfig: tokens of ``backbone`` (default: ``config.backbone``,
    built at ``config.image_size`` when that is set), memory vectors from ``config.memory_backbone``
    (or the token cache) standardised when ``config.standardize_memory``."""
    if backbone is None:
        backbone = config.backbone if config.image_size is None else config_backbone(config)
    memory = None
    if config.memory_backbone:
        memory = (config.memory_backbone if config.image_size is None
                  else config_backbone(config, config.memory_backbone))
    return build_features(data, backbone, config.layers, config.pool, config.memory_layer, memory_backbone=memory,
                          standardize_memory=config.standardize_memory)


def adapt_config(config: TrainConfig, features: FeatureSet) -> AdaptConfig:
    """The :class:`AdaptConfig` of a TrainConfig (layers and pooling as the cached features)."""
    return AdaptConfig(lora_rank=config.lora_rank, lora_alpha=config.lora_alpha, lora_targets=config.lora_targets,
                       adaln_zero=config.adaln_zero, adaln_targets=config.adaln_targets,
                       adaln_gates=config.adaln_gates, adaln_bound=config.adaln_bound, pool=config.pool,
                       layers=features.layer_names, t1_layer="" if config.t1_layer is None else str(config.t1_layer))


def load_model(checkpoint: str | Path, data_dir: str | Path | None = None) -> torch.nn.Module:
    """Rebuild a trained model from a checkpoint written by :func:`fit_encoder` (eval mode, CPU).

    A model trained with its backbone in the loop comes back as a :class:`BackboneInLoop`; its
    backbone (and T-1 backbone) is rebuilt from the config and must have the weights it was trained on."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    tc = TrainConfig.from_dict(ckpt["train_config"])
    kind = ckpt.get("model_kind", tc.model)
    model = build_model(kind, model_entry(kind).config_class.from_dict(ckpt["model_config"]),
                        data_dir or tc.data_dir, tc.subjects)
    if "adapt_config" in ckpt:
        backbone = in_loop_backbone(tc)
        t1 = t1_in_loop_backbone(tc) if getattr(model.config, "t1_input_dim", 0) else None
        for bb, name, key in ((backbone, tc.backbone, "backbone_fingerprint"), (t1, tc.t1_backbone, "t1_fingerprint")):
            want = ckpt.get(key)
            if bb is not None and want and bb.fingerprint != want:
                raise ValueError(f"{checkpoint} was trained on other weights of backbone {name!r} (fingerprint "
                                 f"{want[:12]}, rebuilt {bb.fingerprint[:12]}); provide those weights")
        model = BackboneInLoop(backbone, model, AdaptConfig.from_dict(ckpt["adapt_config"]), t1)
    model.load_state_dict(model_state(ckpt))
    return model.eval()


def model_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The wrapped model's state dict from a Lightning checkpoint dict."""
    return {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
