"""B2NConfig: every setting of a brain-to-network run (notebook 04), as named presets.

One typed, frozen config holds the backbones and their input, the :class:`TrainConfig` settings of
the FactorTopy fit, the :class:`~brainnet.models.FactorTopyConfig` options and the settings of the
channel analysis. :meth:`B2NConfig.preset` names two of them:

* ``"notebook"`` (the default): notebook scale — small bottleneck, a random vertex subset per
  step, cosine schedule, standardised tokens; brainnet-tiny and its untrained twin;
* ``"bddn"``: the settings of Brain Decodes Deep Nets (Yang, Gee & Shi 2023) — bottleneck 128,
  AdamW 1e-3 with torch's default weight decay at a constant rate, batch 8, all vertices per step,
  bilinear token resize, zero padding, OpenCLIP ViT-B/16 with ImageNet normalisation, channels
  from W·Wᵀ, ``pca_lowrank`` top channels. Each setting with its source is in docs/preset-bddn.md.

Fields named like a :class:`TrainConfig` field (:attr:`B2NConfig.TRAIN_FIELDS`) or a
:class:`FactorTopyConfig` field (:attr:`B2NConfig.MODEL_FIELDS`) mean the same; fields the
"notebook" preset leaves at the library's default take their default from those classes.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import torch

from brainnet.analysis.channels import CHANNEL_METHODS, TOP_CHANNEL_PCA
from brainnet.backbones.base import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD
from brainnet.data.layout import subject_name
from brainnet.data.prepared import prepared_root
from brainnet.models.configs import DictConfig
from brainnet.models.factortopy import FactorTopyConfig

from .config import TrainConfig
from .features import resolve_backbone

__all__ = ["B2N_PRESETS", "B2NConfig", "NORMALIZATIONS", "adamw_default_weight_decay", "linear_init_std"]

#: Input normalisations a preset can ask for: name -> (mean, std); "backbone" keeps the backbone's own.
NORMALIZATIONS = MappingProxyType({"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "clip": (CLIP_MEAN, CLIP_STD)})


def _default(cls, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls`` (its owner's value, not a copy)."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def adamw_default_weight_decay() -> float:
    """``torch.optim.AdamW``'s default ``weight_decay`` (0.01), what an AdamW built without one uses."""
    return float(inspect.signature(torch.optim.AdamW).parameters["weight_decay"].default)


def linear_init_std(fan_in: int) -> float:
    """Std of ``torch.nn.Linear``'s default weight init, uniform on ``±1 / sqrt(fan_in)``: ``1 / sqrt(3 fan_in)``."""
    return (3.0 * fan_in) ** -0.5


@dataclass(frozen=True)
class B2NConfig(DictConfig):
    """Settings of notebook 04's brain-to-network run.

    Backbone and tokens
        name: the preset's name. backbones: backbones trained one after the other. image_size:
        backbone input side (None: each backbone's own). normalization: "backbone" (its own mean /
        std) or a key of :data:`NORMALIZATIONS`. standardize: z-score every token channel
        (:func:`~brainnet.training.network.standardize_tokens`). pool: cached local maps
        average-pooled to pool x pool (None: the backbone's grid, resized by the model).
    Training (:class:`TrainConfig` fields, :attr:`TRAIN_FIELDS`)
        max_epochs, max_steps, patience, vertices_per_step, batch_size, lr, readout_lr_mult,
        weight_decay, schedule, warmup_steps, min_lr_ratio, grad_clip, loss, beta, eval_split, seed.
    Model (:class:`FactorTopyConfig` fields, :attr:`MODEL_FIELDS`)
        bottleneck, mlp_hidden, grid_size, token_resize, padding, reg_weight, reg_decay_steps,
        readout_init_std, chunk_size.
    Analysis
        n_channels / n_kmeans / channel_method: the channel map
        (:func:`~brainnet.analysis.brain_to_network.channel_labels`); top_channel_pca,
        top_channel_clip, top_channel_joint_clip: the top-channel images
        (:func:`~brainnet.analysis.channels.top_channel_image`'s ``pca`` / ``clip`` / ``joint_clip``).
    """

    #: fields passed to :class:`TrainConfig` under the same name
    TRAIN_FIELDS: ClassVar[tuple[str, ...]] = (
        "pool", "max_epochs", "max_steps", "patience", "vertices_per_step", "batch_size", "lr", "readout_lr_mult",
        "weight_decay", "schedule", "warmup_steps", "min_lr_ratio", "grad_clip", "loss", "beta", "eval_split", "seed")
    #: fields passed to :class:`FactorTopyConfig` (``TrainConfig.model_options``) under the same name
    MODEL_FIELDS: ClassVar[tuple[str, ...]] = (
        "bottleneck", "mlp_hidden", "grid_size", "token_resize", "padding", "reg_weight", "reg_decay_steps",
        "readout_init_std", "chunk_size")

    name: str = "notebook"
    backbones: tuple[str, ...] = ("brainnet-tiny", "brainnet-tiny-random")
    image_size: int | None = None
    normalization: str = "backbone"
    standardize: bool = True
    pool: int | None = 8
    # training
    max_epochs: int = 6
    max_steps: int = -1
    patience: int | None = None
    vertices_per_step: int | None = 512
    batch_size: int = 32
    lr: float = 2e-3
    readout_lr_mult: float = _default(TrainConfig, "readout_lr_mult")
    weight_decay: float = 0.0
    schedule: str = _default(TrainConfig, "schedule")
    warmup_steps: int = _default(TrainConfig, "warmup_steps")
    min_lr_ratio: float = _default(TrainConfig, "min_lr_ratio")
    grad_clip: float | None = _default(TrainConfig, "grad_clip")
    loss: str = _default(TrainConfig, "loss")
    beta: float = 0.1
    eval_split: str = "test"
    seed: int = 0
    # model: readout_init_std is small so that after a short run the readout directions are the learned
    # ones, not the random start (the channel map clusters them; with std 1 it is salt-and-pepper)
    bottleneck: int = 32
    mlp_hidden: int = 64
    grid_size: int | None = _default(FactorTopyConfig, "grid_size")
    token_resize: str = _default(FactorTopyConfig, "token_resize")
    padding: str = _default(FactorTopyConfig, "padding")
    reg_weight: float = _default(FactorTopyConfig, "reg_weight")
    reg_decay_steps: int = 100
    readout_init_std: float = 0.05
    chunk_size: int | None = None
    # analysis
    n_channels: int = 20
    n_kmeans: int = 1000
    channel_method: str = "weights"
    top_channel_pca: str = "svd"
    top_channel_clip: tuple[float, float] = (5.0, 95.0)
    top_channel_joint_clip: bool = False

    def __post_init__(self):
        if isinstance(self.backbones, str) or not self.backbones:
            raise ValueError(f"backbones must be a non-empty sequence of names, got {self.backbones!r}")
        object.__setattr__(self, "backbones", tuple(self.backbones))
        object.__setattr__(self, "top_channel_clip", tuple(float(v) for v in self.top_channel_clip))
        if self.normalization != "backbone" and self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be 'backbone' or one of {sorted(NORMALIZATIONS)}, "
                             f"got {self.normalization!r}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be >= 1 or None, got {self.image_size}")
        if self.channel_method not in CHANNEL_METHODS:
            raise ValueError(f"channel_method must be one of {CHANNEL_METHODS}, got {self.channel_method!r}")
        if self.top_channel_pca not in TOP_CHANNEL_PCA:
            raise ValueError(f"top_channel_pca must be one of {TOP_CHANNEL_PCA}, got {self.top_channel_pca!r}")
        if not 1 <= self.n_channels <= self.n_kmeans:
            raise ValueError(f"need 1 <= n_channels <= n_kmeans, got {self.n_channels} and {self.n_kmeans}")
        low, high = self.top_channel_clip
        if not 0 <= low < high <= 100:
            raise ValueError(f"top_channel_clip must satisfy 0 <= low < high <= 100, got {self.top_channel_clip}")
        FactorTopyConfig(**self.model_options)  # the model fields' own checks
        self.train_config("", 1, self.backbones[0], "")  # the training fields' own checks

    @classmethod
    def preset(cls, name: str = "notebook", **changes) -> B2NConfig:
        """The preset ``name`` (a key of :data:`B2N_PRESETS`) with ``changes`` (fields) on top."""
        if name not in B2N_PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(B2N_PRESETS)}")
        return cls(**{**B2N_PRESETS[name], "name": name, **changes})

    def replace(self, **changes) -> B2NConfig:
        return dataclasses.replace(self, **changes)

    @property
    def model_options(self) -> dict:
        """The :class:`FactorTopyConfig` fields of this run (``TrainConfig.model_options``)."""
        return {k: getattr(self, k) for k in self.MODEL_FIELDS}

    @property
    def top_channel_options(self) -> dict:
        """Keyword arguments of :func:`~brainnet.analysis.channels.top_channel_image`."""
        return {"pca": self.top_channel_pca, "clip": self.top_channel_clip, "joint_clip": self.top_channel_joint_clip}

    def train_config(self, data, subject, backbone: str, out_dir: str | Path, **changes) -> TrainConfig:
        """The :class:`TrainConfig` of FactorTopy for one subject on one backbone.

        ``changes`` are TrainConfig fields on top (``model_options`` in them update
        :attr:`model_options`). Train it with ``fit_encoder(config, features=...)``, the features
        from :func:`~brainnet.training.network.network_features` of :meth:`backbone`.

        Parameters
        ----------
        data : prepared dataset (path or :class:`~brainnet.data.PreparedDataset`; "" for none);
        subject : "subj01" or 1; backbone : its registered name (recorded in the config).
        """
        options = {**self.model_options, **dict(changes.pop("model_options", None) or {})}
        settings = {**{k: getattr(self, k) for k in self.TRAIN_FIELDS}, **changes}
        return TrainConfig(data_dir=str(prepared_root(data)) if data else "", subjects=(subject_name(subject),),
                           backbone=backbone, out_dir=str(out_dir), model="factortopy", model_options=options,
                           resume=settings.pop("resume", False), **settings)

    def backbone(self, name: str, **kwargs):
        """Backbone ``name`` (:func:`~brainnet.training.features.resolve_backbone`) at this run's
        ``image_size`` and ``normalization``; ``kwargs`` go to ``create_backbone``."""
        if self.image_size is not None:
            kwargs.setdefault("image_size", self.image_size)
        bb = resolve_backbone(name, **kwargs)
        if self.normalization != "backbone":
            bb.set_normalization(*NORMALIZATIONS[self.normalization])
        return bb


#: Field values of each preset (fields not named keep the class defaults, which are the "notebook" run's).
B2N_PRESETS = MappingProxyType({
    "notebook": MappingProxyType({}),
    "bddn": MappingProxyType({
        "backbones": ("clip-vit-b-16",), "normalization": "imagenet", "standardize": False, "pool": None,
        "vertices_per_step": None, "batch_size": 8, "lr": 1e-3, "readout_lr_mult": 1.0,
        "weight_decay": adamw_default_weight_decay(), "schedule": "constant", "warmup_steps": 0,
        "bottleneck": 128, "mlp_hidden": 128, "grid_size": 8, "token_resize": "bilinear", "padding": "zeros",
        "reg_weight": 0.1, "reg_decay_steps": 2000, "readout_init_std": linear_init_std(128),
        "channel_method": "kernel", "n_channels": 20, "n_kmeans": 1000,
        "top_channel_pca": "lowrank", "top_channel_clip": (5.0, 95.0), "top_channel_joint_clip": True}),
})
