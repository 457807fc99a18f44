"""The backbone contract: ``get_tokens(images) -> (local, global)`` and the metadata around it.

Every adapter subclasses :class:`Backbone` and implements :meth:`Backbone._forward_taps`, which
runs the network on already normalised images and returns one ``(local, global)`` pair per
requested tap. The base class owns what is common: input checks, resizing to the backbone's input
size, its own normalisation, layer-name bookkeeping, freezing and the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

TokenDicts = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]

#: ``Backbone.weights_source`` of a randomly initialised tower (``create_backbone(..., weights="random")``).
RANDOM_WEIGHTS = "random"
#: ``Backbone.weights_source`` of weights brainnet did not load itself (``wrap_module``, a user module).
CUSTOM_WEIGHTS = "custom"


@dataclass(frozen=True)
class InputConfig:
    """How a backbone turns [0, 1] images into its input.

    Attributes:
        size: square input side in pixels; other sizes are resized to it inside ``get_tokens``.
        mean, std: per-channel normalisation applied after resizing (RGB order).
        interpolation: ``torch.nn.functional.interpolate`` mode used for that resize
            (with antialiasing when shrinking).
    """

    size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def __post_init__(self):
        if int(self.size) < 1:
            raise ValueError(f"input size must be a positive integer, got {self.size!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {self.mean!r}, {self.std!r}")
        if min(self.std) <= 0:
            raise ValueError(f"std values must be > 0, got {self.std!r}")
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))


def resolve_layer_indices(n_layers: int, layers: int | Sequence[int] | None) -> list[int]:
    """Turn a timm-style layer selection into sorted absolute indices.

    Args:
        n_layers: number of taps the network offers.
        layers: None = all; int n = the last n; a sequence of indices (negatives count from the end).

    Returns:
        sorted list of distinct indices in [0, n_layers).
    """
    if layers is None:
        return list(range(n_layers))
    if isinstance(layers, bool):
        raise TypeError(f"layers must be None, an int or a sequence of ints, got {layers!r}")
    if isinstance(layers, int):
        if not 1 <= layers <= n_layers:
            raise ValueError(f"layers={layers} asks for the last {layers} of {n_layers} layers; use 1..{n_layers}")
        return list(range(n_layers - layers, n_layers))
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be None, an int or a sequence of ints, got {layers!r}")
    out = []
    for idx in layers:
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise TypeError(f"layer indices must be ints, got {idx!r} in {layers!r}")
        if not -n_layers <= idx < n_layers:
            raise ValueError(f"layer index {idx} out of range for a network with {n_layers} layers")
        out.append(idx % n_layers)
    if not out:
        raise ValueError("layers is an empty sequence; pass None for all layers")
    return sorted(set(out))


def state_dict_digest(module: nn.Module) -> str:
    """blake2b digest of every tensor (name, dtype, shape, bytes) in ``module.state_dict()``."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in module.state_dict().items():
        t = t.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return "blake2b:" + h.hexdigest()


class Backbone(nn.Module):
    """A frozen vision network seen through ``get_tokens``.

    Subclasses call ``super().__init__(...)`` and implement :meth:`_forward_taps`.

    Attributes:
        layer_names: tap names in network order (the absolute tap index as a string, e.g. "0".."11").
        widths: channels per tap, same order.
        grid_sizes: (H, W) of each tap's local map at ``input_size``.
        input_size: square input side in pixels.
        mean, std: the backbone's own normalisation.
        arch: JSON-able description of the architecture (part of the fingerprint).
        weights_source: where the weights came from, set by the builder that loaded them: a
            published identity ("open_clip:ViT-B-16/datacomp_l_s1b_b8k"), "shipped:<sha256[:12]>",
            "file:<sha256[:12]>", :data:`RANDOM_WEIGHTS` or :data:`CUSTOM_WEIGHTS`; see :attr:`weights_id`.
    """

    weights_source: str = CUSTOM_WEIGHTS

    def __init__(
        self,
        *,
        arch: dict,
        input_config: InputConfig,
        n_taps: int,
        indices: Sequence[int],
        widths: Sequence[int],
        grid_sizes: Sequence[tuple[int, int]],
    ):
        super().__init__()
        if not (len(indices) == len(widths) == len(grid_sizes)):
            raise ValueError("indices, widths and grid_sizes must have one entry per tap")
        self.arch = dict(arch)
        self.input_config = input_config
        self.n_taps = int(n_taps)
        self.indices = [int(i) for i in indices]
        self.layer_names = [str(i) for i in self.indices]
        self.widths = [int(w) for w in widths]
        self.grid_sizes = [(int(h), int(w)) for h, w in grid_sizes]
        self.register_buffer("_mean", torch.tensor(input_config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(input_config.std).view(1, 3, 1, 1), persistent=False)
        self.frozen = True
        self._fingerprint: str | None = None
        self._digest: str | None = None

    # ----------------------------------------------------------------- metadata
    @property
    def input_size(self) -> int:
        return self.input_config.size

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.input_config.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.input_config.std

    @property
    def weights_digest(self) -> str:
        """:func:`state_dict_digest` of the current weights (computed once per freeze / unfreeze)."""
        if self._digest is None:
            self._digest = state_dict_digest(self)
        return self._digest

    @property
    def weights_id(self) -> str:
        """Short identity of the weights, for run configs and key numbers: :attr:`weights_source`,
        with 12 hex digits of :attr:`weights_digest` appended to "random" and "custom"
        (e.g. "random:3f2a9c0d1b7e") so that two draws can be told apart."""
        src = self.weights_source
        if src in (RANDOM_WEIGHTS, CUSTOM_WEIGHTS):
            return f"{src}:{self.weights_digest.split(':')[-1][:12]}"
        return src

    @property
    def fingerprint(self) -> str:
        """sha256 (hex) of architecture + weights digest + input transform + layers.

        The weights enter by content (:attr:`weights_digest`), so the same tensors give the same
        fingerprint whatever file or tag they came from; :attr:`weights_id` names them.
        """
        if self._fingerprint is None:
            payload = {
                "version": 1,
                "class": type(self).__name__,
                "arch": self.arch,
                "weights": self.weights_digest,
                "input": asdict(self.input_config),
                "layers": self.indices,
            }
            blob = json.dumps(payload, sort_keys=True, default=str).encode()
            self._fingerprint = hashlib.sha256(blob).hexdigest()
        return self._fingerprint

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> Backbone:
        """Normalise the [0, 1] input with ``mean`` / ``std`` (RGB) instead of the backbone's own.

        In place: the input config, the buffers ``get_tokens`` reads and so the fingerprint (tokens
        cached under the old normalisation are not reused). Returns the backbone."""
        config = replace(self.input_config, mean=tuple(mean), std=tuple(std))  # validated there
        self.input_config = config
        self._mean.copy_(torch.tensor(config.mean, dtype=self._mean.dtype).view(1, 3, 1, 1))
        self._std.copy_(torch.tensor(config.std, dtype=self._std.dtype).view(1, 3, 1, 1))
        self._fingerprint = None
        return self

    # ----------------------------------------------------------------- freezing
    def freeze(self) -> Backbone:
        """No gradients, eval mode (the default state after creation)."""
        for p in self.parameters():
            p.requires_grad_(False)
        self.frozen = True
        self._fingerprint = self._digest = None
        return self.train(False)

    def unfreeze(self) -> Backbone:
        """Allow gradients and train mode; the fingerprint is recomputed on next access."""
        for p in self.parameters():
            p.requires_grad_(True)
        self.frozen = False
        self._fingerprint = self._digest = None
        return self

    def train(self, mode: bool = True) -> Backbone:
        # a frozen backbone stays in eval mode even inside a module put into train mode
        return super().train(bool(mode) and not getattr(self, "frozen", False))

    # ----------------------------------------------------------------- tokens
    def select(self, layers: Sequence[str | int] | None) -> list[int]:
        """Positions (into ``layer_names``) of a subset given by names or absolute tap indices."""
        if layers is None:
            return list(range(len(self.layer_names)))
        if isinstance(layers, (str, int)):
            layers = [layers]
        pos = []
        for layer in layers:
            name = str(layer % self.n_taps) if isinstance(layer, int) else str(layer)
            if name not in self.layer_names:
                raise ValueError(f"layer {layer!r} is not computed by this backbone; it has {self.layer_names}")
            pos.append(self.layer_names.index(name))
        return sorted(set(pos))

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Resize [B, 3, H, W] images in [0, 1] to ``input_size`` and normalise; returns [B, 3, S, S]."""
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor of shape [B, 3, H, W], got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape [B, 3, H, W], got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"images must be float in [0, 1], got dtype {images.dtype} (divide uint8 by 255)")
        x = images.to(self._mean.dtype)
        size = self.input_size
        if x.shape[-2:] != (size, size):
            mode = self.input_config.interpolation
            kw = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
            shrink = x.shape[-1] > size or x.shape[-2] > size
            antialias = shrink and mode in ("bilinear", "bicubic")
            x = F.interpolate(x, size=(size, size), mode=mode, antialias=antialias, **kw)
        return (x - self._mean) / self._std

    def get_tokens(self, images: torch.Tensor, layers: Sequence[str | int] | None = None) -> TokenDicts:
        """Local and global tokens per layer.

        Args:
            images: float tensor [B, 3, H, W] in [0, 1]; resized to ``input_size`` if needed.
            layers: optional subset (names or tap indices) of ``layer_names``; the forward pass
                stops after the last one asked for.

        Returns:
            local: dict name -> [B, C, H', W'] patch/feature grid (prefix tokens removed),
            global: dict name -> [B, C]; both in network order.
        """
        pos = self.select(layers)
        x = self.prepare(images)
        taps = self._forward_taps(x, [self.indices[p] for p in pos])
        names = [self.layer_names[p] for p in pos]
        local = {n: t[0] for n, t in zip(names, taps)}
        glob = {n: t[1] for n, t in zip(names, taps)}
        return local, glob

    def forward(self, images: torch.Tensor) -> TokenDicts:
        return self.get_tokens(images)

    def _forward_taps(self, x: torch.Tensor, take: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Run on normalised input [B, 3, S, S]; one (local [B, C, H, W], global [B, C]) per index in ``take``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"arch={self.arch.get('name', '?')}, input_size={self.input_size}, layers={self.layer_names}"
