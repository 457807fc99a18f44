"""Trainable adapters inside a frozen backbone: LoRA and AdaLN-zero.

Both start as the identity, so an adapted backbone gives exactly the frozen backbone's tokens
until training moves the adapter weights.

* **LoRA** (:func:`add_lora`): a ``Linear`` / ``Conv2d`` layer ``y = W x + b`` becomes
  ``y = W x + b + (alpha / r) * B (A x)`` with ``A`` of shape (r, in), ``B`` of shape (out, r),
  ``B`` initialised to zero. ``W`` and ``b`` stay frozen. For a conv, ``A`` is a conv with the
  layer's kernel, stride and padding to ``r`` channels and ``B`` a 1x1 conv.
* **AdaLN-zero** (:class:`AdaLNZero`): the output ``h`` of chosen norm layers (LayerNorm,
  BatchNorm2d, GroupNorm) is modulated by a condition vector ``c`` (B, d), e.g. the trial's
  behaviour: ``h * (1 + scale(c)) + shift(c)`` per channel, with ``[scale, shift]`` a linear map
  of ``c`` whose weight and bias start at zero. Optionally *gated* (as DiT blocks): the outputs
  of chosen residual-branch layers (e.g. a ViT block's ``ls1`` / ``ls2``) are multiplied by
  ``1 + gate(c)``, and ``bound`` squashes every modulation to ``bound * tanh(.)``.

>>> bb = create_backbone("timm:vit_tiny_patch16_224", image_size=64)
>>> add_lora(bb, rank=4)                       # names of the wrapped layers
>>> adaln = AdaLNZero(bb, cond_dim=35)
>>> with adaln.condition(behaviour):           # (B, 35)
...     local, glob = bb.get_tokens(images)
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

#: Default LoRA targets of transformers: attention input and output projections.
ATTENTION_TARGETS: tuple[str, ...] = ("*qkv", "*attn.proj", "*attn.out_proj", "*attn.q", "*attn.k", "*attn.v")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable rank-``r`` update (zero at init).

    ``forward(x)``: (..., in) -> (..., out). ``weight`` is the merged matrix (out, in), so code that
    calls ``F.linear(x, layer.weight, ...)`` directly also sees the update.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base.requires_grad_(False)
        self.rank = int(rank)
        self.scale = float(alpha if alpha is not None else rank) / self.rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, dtype=base.weight.dtype,
                                               device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype,
                                               device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight + self.scale * (self.lora_b @ self.lora_a)

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * F.linear(F.linear(x, self.lora_a), self.lora_b)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scale={self.scale:g}"


class LoRAConv2d(nn.Module):
    """A frozen ``nn.Conv2d`` (groups = 1) plus a trainable rank-``r`` update (zero at init).

    ``forward(x)``: (B, in, H, W) -> (B, out, H', W'). ``weight`` is the merged kernel
    (out, in, k, k).
    """

    def __init__(self, base: nn.Conv2d, rank: int, alpha: float | None = None):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        if base.groups != 1:
            raise ValueError("LoRAConv2d needs a conv with groups=1")
        self.base = base.requires_grad_(False)
        self.rank = int(rank)
        self.scale = float(alpha if alpha is not None else rank) / self.rank
        kw = dict(dtype=base.weight.dtype, device=base.weight.device)
        self.lora_a = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding,
                                base.dilation, bias=False, padding_mode=base.padding_mode, **kw)
        self.lora_b = nn.Conv2d(rank, base.out_channels, 1, bias=False, **kw)
        nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b.weight)

    @property
    def weight(self) -> torch.Tensor:
        up = self.lora_b.weight[:, :, 0, 0]  # (out, r)
        return self.base.weight + self.scale * torch.einsum("or,rikl->oikl", up, self.lora_a.weight)

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.lora_b(self.lora_a(x))

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scale={self.scale:g}"


LORA_TYPES = (LoRALinear, LoRAConv2d)


def _lora_candidates(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every Linear / groups-1 Conv2d not already inside a LoRA wrapper."""
    inside: list[str] = []
    out = []
    for name, m in module.named_modules():
        if any(name.startswith(p + ".") for p in inside):
            continue
        if isinstance(m, LORA_TYPES):
            inside.append(name)
            continue
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1):
            out.append((name, m))
    return out


def default_lora_targets(module: nn.Module) -> tuple[str, ...]:
    """Attention projections when the network has any (transformers), else every layer ("*")."""
    names = [n for n, m in module.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d, *LORA_TYPES))]
    if any(fnmatch.fnmatchcase(n, p) for n in names for p in ATTENTION_TARGETS):
        return ATTENTION_TARGETS
    return ("*",)


def add_lora(module: nn.Module, rank: int, alpha: float | None = None,
             targets: Sequence[str] | None = None) -> list[str]:
    """Wrap matching ``Linear`` / ``Conv2d`` layers of ``module`` in LoRA adapters, in place.

    Parameters
    ----------
    module : the network (e.g. a :class:`~brainnet.backbones.Backbone`); its own weights should
        already be frozen (the wrapped layers are frozen here).
    rank : r >= 1
    alpha : update scale numerator (scale = alpha / r); None = r (scale 1)
    targets : fnmatch patterns on the layers' qualified names (``"*qkv"``, ``"net.stages.3.*"``);
        None = :func:`default_lora_targets`

    Returns
    -------
    names of the wrapped layers. Raises ``ValueError`` when no layer matches.
    """
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    pats = tuple(targets) if targets else default_lora_targets(module)
    cands = _lora_candidates(module)
    chosen = [(n, m) for n, m in cands if n and any(fnmatch.fnmatchcase(n, p) for p in pats)]
    if not chosen:
        sample = [n for n, _ in cands[:8]]
        raise ValueError(f"no Linear / Conv2d layer matches LoRA targets {pats}; layers look like {sample}")
    for name, layer in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        wrapper = LoRALinear if isinstance(layer, nn.Linear) else LoRAConv2d
        setattr(parent, child, wrapper(layer, rank, alpha))
    return [n for n, _ in chosen]


NORM_TYPES = (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm)


def _norm_channels(m: nn.Module) -> int:
    if isinstance(m, nn.LayerNorm):
        return int(m.normalized_shape[-1])
    if isinstance(m, nn.GroupNorm):
        return int(m.num_channels)
    return int(m.num_features)


def _gate_channels(m: nn.Module) -> int:
    """Output channels of a gated layer: a LayerScale-like module (``gamma``), Linear or Conv2d."""
    gamma = getattr(m, "gamma", None)
    if isinstance(gamma, torch.Tensor):
        return int(gamma.numel())
    if isinstance(m, nn.Linear):
        return int(m.out_features)
    if isinstance(m, nn.Conv2d):
        return int(m.out_channels)
    raise ValueError(f"cannot tell the output channels of {type(m).__name__} to gate it")


class _Modulate:
    """Forward hook of one norm (or gated) layer (an object, not a closure, so that copies and
    pickles of the network point at the copied :class:`AdaLNZero`)."""

    def __init__(self, owner: AdaLNZero, key: str, channels_last: bool, gate: bool = False):
        self.owner, self.key, self.channels_last, self.gate = owner, key, channels_last, gate

    def __call__(self, _module, _inputs, out):
        return self.owner.modulate(self.key, out, self.channels_last, self.gate)


class AdaLNZero(nn.Module):
    """Condition-dependent shift and scale after norm layers of a network (zero at init).

    Parameters
    ----------
    network : the module whose norm layers are modulated (hooks are registered on them)
    cond_dim : size d of the condition vector
    targets : fnmatch patterns on the norm layers' names; None = every LayerNorm / BatchNorm2d /
        GroupNorm
    gates : fnmatch patterns of layers whose output is multiplied by ``1 + gate(c)`` (e.g.
        ``("*blocks.*.ls1", "*blocks.*.ls2")``: the residual branches of timm ViT blocks); None = no gates
    bound : None, or squash every shift / scale / gate to ``bound * tanh(.)``

    Run the network inside ``with adaln.condition(c):`` with ``c`` of shape (B, d); running it
    outside raises ``RuntimeError``. :meth:`remove` takes the hooks off again.
    """

    def __init__(self, network: nn.Module, cond_dim: int, targets: Sequence[str] | None = None,
                 gates: Sequence[str] | None = None, bound: float | None = None):
        super().__init__()
        if cond_dim < 1:
            raise ValueError(f"cond_dim must be >= 1, got {cond_dim}")
        if bound is not None and bound <= 0:
            raise ValueError(f"bound must be > 0 or None, got {bound}")
        norms = [(n, m) for n, m in network.named_modules() if isinstance(m, NORM_TYPES) and n
                 and (not targets or any(fnmatch.fnmatchcase(n, p) for p in targets))]
        if not norms:
            raise ValueError(f"no LayerNorm / BatchNorm2d / GroupNorm layer matches {targets}")
        gated = [(n, m) for n, m in network.named_modules()
                 if n and gates and any(fnmatch.fnmatchcase(n, p) for p in gates)]
        if gates and not gated:
            raise ValueError(f"no layer matches the AdaLN gate patterns {tuple(gates)}")
        self.cond_dim = int(cond_dim)
        self.bound = None if bound is None else float(bound)
        self.names = [n for n, _ in norms]
        self.gate_names = [n for n, _ in gated]
        self.modulators = nn.ModuleDict()
        self._cond: torch.Tensor | None = None
        self._network = [network]  # a list: not registered as a submodule (no second copy in state_dict)
        for (name, m), gate in [(x, False) for x in norms] + [(x, True) for x in gated]:
            key = ("gate__" if gate else "") + name.replace(".", "__")
            lin = nn.Linear(cond_dim, (1 if gate else 2) * (_gate_channels(m) if gate else _norm_channels(m)))
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
            self.modulators[key] = lin
            m.register_forward_hook(_Modulate(self, key, gate or isinstance(m, nn.LayerNorm), gate))

    @contextmanager
    def condition(self, cond: torch.Tensor):
        """Modulate with ``cond`` (B, cond_dim) while the block runs."""
        if cond.ndim != 2 or cond.shape[1] != self.cond_dim:
            raise ValueError(f"condition must be (B, {self.cond_dim}), got {tuple(cond.shape)}")
        previous, self._cond = self._cond, cond
        try:
            yield self
        finally:
            self._cond = previous

    def modulate(self, key: str, out: torch.Tensor, channels_last: bool, gate: bool = False) -> torch.Tensor:
        """``out * (1 + scale) + shift`` for the norm layer ``key`` (``out * (1 + gate)`` for a
        gated layer) under the current condition."""
        cond = self._cond
        if cond is None:
            raise RuntimeError("this network has AdaLN-zero adapters: run it inside `with adaln.condition(c):`")
        b = cond.shape[0]
        if out.shape[0] != b:
            raise ValueError(f"AdaLN-zero: a norm output has batch {out.shape[0]} but the condition has {b} rows "
                             "(networks that fold windows into the batch are not supported)")
        mod = self.modulators[key](cond.to(out.dtype))
        if self.bound is not None:
            mod = self.bound * torch.tanh(mod)
        if gate:
            scale, shift = mod, torch.zeros_like(mod)
        else:
            scale, shift = mod.chunk(2, dim=1)  # (B, C) each
        c = scale.shape[1]
        if channels_last and out.shape[-1] == c:
            shape = (b,) + (1,) * (out.ndim - 2) + (c,)
        elif out.ndim >= 2 and out.shape[1] == c:  # channels first (BatchNorm, GroupNorm, LayerNorm2d)
            shape = (b, c) + (1,) * (out.ndim - 2)
        else:
            raise ValueError(f"AdaLN-zero: cannot find {c} channels in a norm output of shape {tuple(out.shape)}")
        return out * (1 + scale.reshape(shape)) + shift.reshape(shape)

    def remove(self) -> None:
        """Take this adapter's hooks off the network (the modulators stay)."""
        for m in self._network[0].modules():
            for k, hook in list(m._forward_hooks.items()):
                if isinstance(hook, _Modulate) and hook.owner is self:
                    del m._forward_hooks[k]

    def extra_repr(self) -> str:
        return f"cond_dim={self.cond_dim}, norms={len(self.names)}, gates={len(self.gate_names)}, bound={self.bound}"
