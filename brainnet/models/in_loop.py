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
The frozen backbone weights are left out of :meth:`state_dict` (checkpoints hold the adapters
and the model only); :attr:`base_fingerprint` names the backbone weights they belong to.
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
    """

    def __init__(self, backbone, model: EncodingModel, config: AdaptConfig):
        super().__init__()
        check_encoding_model(model)
        if not config.enabled:
            raise ValueError("BackboneInLoop needs lora_rank > 0 or adaln_zero=True (else train on cached tokens)")
        backbone.freeze()
        self.base_fingerprint = backbone.fingerprint
        self.adapt_config = config
        self.lora_layers = (add_lora(backbone, config.lora_rank, config.lora_alpha, config.lora_targets or None)
                            if config.lora_rank > 0 else [])
        self.adaln = (AdaLNZero(backbone, N_BEHAVIOUR, config.adaln_targets or None, config.adaln_gates or None,
                                config.adaln_bound) if config.adaln_zero else None)
        self.backbone = backbone
        self.model = model
        mask = getattr(model, "behaviour_mask", None)
        self.register_buffer("cond_mask", mask.clone() if mask is not None else torch.zeros(N_BEHAVIOUR),
                             persistent=False)
        self.layers = list(config.layers) or list(backbone.layer_names)
        frozen = {n for n, p in backbone.named_parameters() if not p.requires_grad}
        frozen |= {n for n, _ in backbone.named_buffers()}
        self._frozen_keys = frozenset(f"backbone.{n}" for n in frozen)
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
        x = x.float() / 255.0 if not x.is_floating_point() else x
        ctx = nullcontext()
        if self.adaln is not None:
            if "behaviour" not in batch:
                raise ValueError("AdaLN-zero is conditioned on behaviour: the batch needs 'behaviour' (B, 35)")
            ctx = self.adaln.condition(batch["behaviour"].float() * self.cond_mask)
        with ctx:
            local, glob = self.backbone.get_tokens(x, layers=self.layers)
        return {n: pool_map(t, self.adapt_config.pool) for n, t in local.items()}, glob

    def forward(self, batch, vertex_idx=None) -> torch.Tensor:
        local, glob = self.tokens(batch)
        return self.model({**batch, "local": local, "global": glob}, vertex_idx)

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
        """Trainable parameter counts: ``lora``, ``adaln``, ``model``."""
        count = {"lora": 0, "adaln": 0, "model": 0}
        for name, p in self.named_parameters():
            if p.requires_grad:
                part = "model" if name.startswith("model.") else "adaln" if name.startswith("adaln.") else "lora"
                count[part] += p.numel()
        return count
