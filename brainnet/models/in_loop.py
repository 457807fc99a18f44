"""An encoding model with its backbone in the loop, adapted by LoRA and / or AdaLN-zero.

Models normally read cached tokens of a frozen backbone. :class:`BackboneInLoop` instead runs the
backbone on each batch's images, with trainable adapters inside it (see
:mod:`brainnet.backbones.adapters`), and hands the tokens to the wrapped model:

* ``batch["pixels"]``: uint8 (B, 3, S, S) images at the backbone's input size (what
  :class:`brainnet.training.batches.EncodingDataset` serves when given ``images``);
* local maps are pooled to ``pool x pool`` as the token cache pools them, so at initialisation
  (adapters at zero) the model sees the cached tokens (up to the cache's fp16 rounding);
* AdaLN-zero is conditioned on the trial's 35 behaviour features, with the columns of behaviour
  groups the wrapped model switches off set to zero (all zero for models without behaviour).

Everything else in the batch (memory vectors, behaviour) goes to the wrapped model unchanged.

Optionally a second backbone (``t1_backbone``, with its own adapters of the same settings) runs on
the previous trial's image, ``batch["t1_pixels"]`` (B, 3, S', S') uint8 (served when the dataset's
:class:`~brainnet.training.batches.ImagePixels` has ``t1_size``); its global token of layer
``AdaptConfig.t1_layer`` goes to the model as ``batch["t1_global"]`` (B, D') (zeros where
``memory_valid[:, 0]`` is False: no previous image), read by :class:`MemModel`'s T = -1 path
(``MemConfig.t1_input_dim``). Its AdaLN-zero is conditioned on the previous trial's behaviour
(``memory_behaviour[:, 0]``, masked the same way).

The frozen backbone weights (of both backbones) are left out of :meth:`state_dict` (checkpoints
hold the adapters and the model only); :attr:`base_fingerprint` / :attr:`t1_fingerprint` name the
backbone weights they belong to.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from brainnet.backbones.adapters import AdaLNZero, add_lora
from brainnet.cache import pool_map
from brainnet.data.layout import N_BEHAVIOUR

from .configs import DictConfig
from .protocol import EncodingModel, check_encoding_model


@dataclass(frozen=True)
class AdaptConfig(DictConfig):
    """Backbone adaptation of :class:`BackboneInLoop`.

    Attributes
    ----------
    lora_rank : rank of the LoRA updates (0 = no LoRA; 4 in the Memory Encoding Model)
    lora_alpha : LoRA scale numerator (scale = alpha / rank); None = rank
    lora_targets : fnmatch patterns of the layers to adapt; () = attention projections of a
        transformer, every Linear / Conv2d layer otherwise
    adaln_zero : modulate the backbone's norm layers by the behaviour features
    adaln_targets : fnmatch patterns of the norm layers; () = all
    adaln_gates : fnmatch patterns of residual-branch layers gated by ``1 + gate(c)``; () = none
    adaln_bound : None, or every AdaLN modulation squashed to ``bound * tanh(.)``
    pool : local maps pooled to ``pool x pool`` (as the token cache)
    layers : backbone layers fed to the model, in the model's order; () = all taps
    t1_layer : layer of the T-1 backbone whose global token is the model's T-1 input ("" = its last
        tap); only read when :class:`BackboneInLoop` is given a ``t1_backbone``
    """

    lora_rank: int = 0
    lora_alpha: float | None = None
    lora_targets: tuple[str, ...] = ()
    adaln_zero: bool = False
    adaln_targets: tuple[str, ...] = ()
    adaln_gates: tuple[str, ...] = ()
    adaln_bound: float | None = None
    pool: int | None = 8
    layers: tuple[str, ...] = ()
    t1_layer: str = ""

    def __post_init__(self):
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0, got {self.lora_rank}")
        if self.lora_alpha is not None and self.lora_alpha <= 0:
            raise ValueError(f"lora_alpha must be > 0 or None, got {self.lora_alpha}")
        if self.pool is not None and self.pool < 1:
            raise ValueError(f"pool must be >= 1 or None, got {self.pool}")

    @property
    def enabled(self) -> bool:
        """True when any adapter is on."""
        return self.lora_rank > 0 or self.adaln_zero


class BackboneInLoop(nn.Module):
    """``backbone`` (frozen, with adapters) -> tokens -> ``model``; ``forward(batch, vertex_idx) -> (B, N)``.

    Parameters
    ----------
    backbone : a :class:`~brainnet.backbones.Backbone`; frozen here, then adapted in place
    model : an :class:`~brainnet.models.EncodingModel` reading ``batch["local"]`` /
        ``batch["global"]`` (:class:`MemModel`, :class:`FactorTopy`); its members (``config``,
        ``positions``, ``layer_weights``, ``scale``, ``regularizer`` ...) are this wrapper's too
    config : AdaptConfig (at least one adapter on)
    t1_backbone : optional second :class:`~brainnet.backbones.Backbone` for the previous image
        (frozen here, then given its own adapters of ``config``'s settings); the model's config must
        have ``t1_input_dim`` equal to the width of its layer ``config.t1_layer``
    """

    def __init__(self, backbone, model: EncodingModel, config: AdaptConfig, t1_backbone=None):
        super().__init__()
        check_encoding_model(model)
        if not config.enabled:
            raise ValueError("BackboneInLoop needs lora_rank > 0 or adaln_zero=True (else train on cached tokens)")
        self.adapt_config = config
        self.base_fingerprint = backbone.freeze().fingerprint
        self.lora_layers, self.adaln = _adapt(backbone, config)
        self.backbone = backbone
        self.model = model
        mask = getattr(model, "behaviour_mask", None)
        self.register_buffer("cond_mask", mask.clone() if mask is not None else torch.zeros(N_BEHAVIOUR),
                             persistent=False)
        self.layers = list(config.layers) or list(backbone.layer_names)
        frozen = _frozen_names(backbone, "backbone.")
        self.t1_backbone = self.t1_adaln = self.t1_fingerprint = None
        self.t1_lora_layers, self.t1_layer = [], ""
        if t1_backbone is not None:
            key = int(config.t1_layer) if config.t1_layer.lstrip("-").isdigit() else config.t1_layer  # tap or name
            self.t1_layer = t1_backbone.layer_names[t1_backbone.select([key])[0] if key != "" else -1]
            width = dict(zip(t1_backbone.layer_names, t1_backbone.widths))[self.t1_layer]
            want = getattr(model.config, "t1_input_dim", 0)
            if want != width:
                raise ValueError(f"the model's T-1 input is {want} wide (t1_input_dim; 0 = the memory vector), "
                                 f"the t1 backbone's layer {self.t1_layer} gives {width}")
            self.t1_fingerprint = t1_backbone.freeze().fingerprint
            self.t1_lora_layers, self.t1_adaln = _adapt(t1_backbone, config)
            self.t1_backbone = t1_backbone
            frozen |= _frozen_names(t1_backbone, "t1_backbone.")
        self._frozen_keys = frozenset(frozen)
        self.register_load_state_dict_post_hook(self._ignore_missing_frozen)

    # ---- forward ----
    def tokens(self, batch) -> tuple[dict, dict]:
        """(local, global) token dicts of ``batch["pixels"]`` through the adapted backbone."""
        if "pixels" not in batch:
            raise ValueError("the backbone runs in the loop: the batch needs 'pixels' (B, 3, S, S) uint8 "
                             "(EncodingDataset(..., images=ImagePixels(...)))")
        x = batch["pixels"]
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"pixels must be (B, 3, S, S), got {tuple(x.shape)}")
        x = _as_float(x)
        ctx = nullcontext()
        if self.adaln is not None:
            if "behaviour" not in batch:
                raise ValueError("AdaLN-zero is conditioned on behaviour: the batch needs 'behaviour' (B, 35)")
            ctx = self.adaln.condition(batch["behaviour"].float() * self.cond_mask)
        with ctx:
            local, glob = self.backbone.get_tokens(x, layers=self.layers)
        return {n: pool_map(t, self.adapt_config.pool) for n, t in local.items()}, glob

    def t1_tokens(self, batch) -> torch.Tensor:
        """Global token (B, D') of the previous image ``batch["t1_pixels"]`` through the adapted T-1
        backbone, layer :attr:`t1_layer`; zero rows where ``batch["memory_valid"][:, 0]`` is False."""
        if "t1_pixels" not in batch or "memory_valid" not in batch:
            raise ValueError("the T-1 backbone runs in the loop: the batch needs 't1_pixels' (B, 3, S, S) uint8 "
                             "and 'memory_valid' (ImagePixels(..., t1_size=...))")
        x, valid = batch["t1_pixels"], batch["memory_valid"][:, 0].bool()
        width = dict(zip(self.t1_backbone.layer_names, self.t1_backbone.widths))[self.t1_layer]
        out = torch.zeros(x.shape[0], width, device=x.device)
        if not bool(valid.any()):
            return out
        ctx = nullcontext()
        if self.t1_adaln is not None:
            prev = batch.get("memory_behaviour")
            prev = prev[:, 0] if prev is not None else torch.zeros(x.shape[0], N_BEHAVIOUR, device=x.device)
            ctx = self.t1_adaln.condition(prev[valid].float() * self.cond_mask)
        with ctx:
            glob = self.t1_backbone.get_tokens(_as_float(x[valid]), layers=[self.t1_layer])[1][self.t1_layer]
        return out.to(glob.dtype).index_put((valid,), glob)

    def forward(self, batch, vertex_idx=None) -> torch.Tensor:
        extra = {} if self.t1_backbone is None else {"t1_global": self.t1_tokens(batch)}
        local, glob = self.tokens(batch)
        return self.model({**batch, **extra, "local": local, "global": glob}, vertex_idx)

    @property
    def input_sizes(self) -> tuple[int, int | None]:
        """Input sides of the backbone and of the T-1 backbone (None without one)."""
        return self.backbone.input_size, None if self.t1_backbone is None else self.t1_backbone.input_size

    # ---- EncodingModel members: the wrapped model's ----
    @property
    def config(self):
        """The wrapped model's config (this wrapper's own settings are :attr:`adapt_config`)."""
        return self.model.config

    @property
    def subjects(self):
        return self.model.subjects

    def n_vertices(self, subject: str) -> int:
        return self.model.n_vertices(subject)

    def positions(self, subject: str) -> torch.Tensor:
        """The wrapped model's retina positions (V_s, 2)."""
        return self.model.positions(subject)

    def layer_weights(self, subject: str) -> torch.Tensor:
        """The wrapped model's layer weights (V_s, L)."""
        return self.model.layer_weights(subject)

    def scale(self, subject: str) -> torch.Tensor:
        """The wrapped model's local / global mix (V_s,)."""
        return self.model.scale(subject)

    def regularizer(self, subject: str, vertex_idx=None) -> torch.Tensor:
        """The wrapped model's regulariser (the adapters have none)."""
        return self.model.regularizer(subject, vertex_idx)

    def regularizer_weight(self, step: int) -> float:
        return self.model.regularizer_weight(step)

    # ---- checkpoints without the frozen backbone ----
    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        out = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        for key in self._frozen_keys:
            out.pop(prefix + key, None)
        return out

    def _ignore_missing_frozen(self, _module, incompatible) -> None:
        keep = []
        for key in incompatible.missing_keys:
            parts = key.split(".")
            if not any(".".join(parts[i:]) in self._frozen_keys for i in range(len(parts))):
                keep.append(key)
        incompatible.missing_keys[:] = keep

    def n_trainable(self) -> dict[str, int]:
        """Trainable parameter counts: ``lora``, ``adaln``, ``model`` (and ``t1``: the T-1 backbone's adapters)."""
        count = {"lora": 0, "adaln": 0, "model": 0} | ({} if self.t1_backbone is None else {"t1": 0})
        for name, p in self.named_parameters():
            if p.requires_grad:
                part = ("t1" if name.startswith(("t1_backbone.", "t1_adaln.")) else "model" if name.startswith("model.")
                        else "adaln" if name.startswith("adaln.") else "lora")
                count[part] += p.numel()
        return count


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1] (float input passes through)."""
    return x if x.is_floating_point() else x.float() / 255.0


def _adapt(backbone, config: AdaptConfig) -> tuple[list, AdaLNZero | None]:
    """Add ``config``'s adapters to a frozen ``backbone`` in place: (LoRA layers, AdaLNZero or None)."""
    lora = (add_lora(backbone, config.lora_rank, config.lora_alpha, config.lora_targets or None)
            if config.lora_rank > 0 else [])
    adaln = (AdaLNZero(backbone, N_BEHAVIOUR, config.adaln_targets or None, config.adaln_gates or None,
                       config.adaln_bound) if config.adaln_zero else None)
    return lora, adaln


def _frozen_names(backbone, prefix: str) -> set[str]:
    """State-dict keys (with ``prefix``) of the backbone's frozen weights and buffers."""
    frozen = {n for n, p in backbone.named_parameters() if not p.requires_grad}
    frozen |= {n for n, _ in backbone.named_buffers()}
    return {prefix + n for n in frozen}
