"""brainnet-tiny: a small 4-stage CNN that works offline.

Why a CNN and not a tiny ViT: each stage halves the resolution and doubles the width
(64 px input -> 32, 16, 8, 4 grids; 24, 48, 96, 192 channels), so the taps form a clear
hierarchy from local edges to object-level features, which is what the layer / scale selectors
of the encoding models are meant to find. A 6-block ViT keeps one grid and width for every block,
and it learns far less from a few thousand CPU steps on synthetic scenes.

``brainnet-tiny`` loads the weights shipped in ``brainnet/backbones/weights/`` (trained by
``scripts/train_default_backbone.py`` on :mod:`brainnet.data.mini.scenes`); ``brainnet-tiny-random``
is the same architecture with a seeded random initialisation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from brainnet.errors import WeightsUnavailableError

from .base import IMAGENET_MEAN, IMAGENET_STD, Backbone, InputConfig, resolve_layer_indices
from .registry import register_backbone
from .weights import file_sha256, load_into, load_state_dict_file, weights_label

WEIGHTS_DIR = Path(__file__).parent / "weights"
TINY_WEIGHTS = WEIGHTS_DIR / "brainnet_tiny.pt"
TINY_RECORD = WEIGHTS_DIR / "brainnet_tiny.json"
TINY_WIDTHS: tuple[int, ...] = (24, 48, 96, 192)
TINY_INPUT_SIZE = 64


class TinyStage(nn.Module):
    """Stride-2 3x3 conv (downsample + widen) then one residual block of two 3x3 convs."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out),
                                  nn.ReLU(inplace=True))
        self.res = nn.Sequential(
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return self.act(x + self.res(x))


class TinyCNN(nn.Module):
    """4 :class:`TinyStage` s; ``forward`` returns the list of stage outputs [B, C_i, S/2^(i+1), S/2^(i+1)]."""

    def __init__(self, widths: Sequence[int] = TINY_WIDTHS):
        super().__init__()
        chans = [3, *widths]
        self.stages = nn.ModuleList(TinyStage(a, b) for a, b in zip(chans[:-1], chans[1:]))

    def forward(self, x: torch.Tensor, last: int | None = None) -> list[torch.Tensor]:
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            outs.append(x)
            if last is not None and i >= last:
                break
        return outs


class TinyBackbone(Backbone):
    """:class:`TinyCNN` behind ``get_tokens``: local = stage map, global = its spatial mean."""

    def __init__(self, net: TinyCNN, arch: dict, input_config: InputConfig, layers=None):
        n_taps = len(net.stages)
        indices = resolve_layer_indices(n_taps, layers)
        widths = [net.stages[i].down[0].out_channels for i in indices]
        grids = []
        s = input_config.size
        sizes = []
        for _ in range(n_taps):
            s = (s + 1) // 2  # 3x3, stride 2, padding 1
            sizes.append(s)
        grids = [(sizes[i], sizes[i]) for i in indices]
        super().__init__(arch=arch, input_config=input_config, n_taps=n_taps, indices=indices, widths=widths,
                         grid_sizes=grids)
        net.stages = net.stages[: max(indices) + 1]
        self.net = net

    def _forward_taps(self, x, take):
        outs = self.net(x, last=take[-1])
        return [(outs[i], outs[i].mean((2, 3))) for i in take]


def tiny_record() -> dict:
    """The training record shipped beside the weights (command, data, steps, accuracy), or {}."""
    return json.loads(TINY_RECORD.read_text()) if TINY_RECORD.exists() else {}


def _input(image_size) -> InputConfig:
    return InputConfig(size=int(image_size or TINY_INPUT_SIZE), mean=IMAGENET_MEAN, std=IMAGENET_STD)


@register_backbone("brainnet-tiny-random", description="brainnet-tiny architecture, seeded random init (seed=0)")
def brainnet_tiny_random(pretrained=False, weights=None, layers=None, image_size=None, seed: int = 0):
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG state
        torch.manual_seed(int(seed))
        net = TinyCNN()
    if weights is not None:
        load_into(net, load_state_dict_file(weights), weights)
    arch = {"name": "brainnet-tiny", "widths": list(TINY_WIDTHS)}
    bb = TinyBackbone(net, arch, _input(image_size), layers)
    bb.weights_source = weights_label(weights, None)
    return bb


@register_backbone("brainnet-tiny",
                   description="4-stage CNN (1.1 M params) trained on synthetic scenes; ships with brainnet")
def brainnet_tiny(pretrained=True, weights=None, layers=None, image_size=None):
    """The shipped weights ("shipped:<sha256[:12]>" of the file), or a checkpoint ``weights``; random
    initial weights are ``brainnet-tiny-random`` (create_backbone sends weights="random" there)."""
    if not pretrained and weights is None:
        raise ValueError("random brainnet-tiny weights are 'brainnet-tiny-random'")
    path = weights if weights is not None else TINY_WEIGHTS
    if weights is None and not TINY_WEIGHTS.exists():
        raise WeightsUnavailableError(
            f"{TINY_WEIGHTS} is missing; run `python -m scripts.train_default_backbone` to train it, "
            "or use 'brainnet-tiny-random'"
        )
    net = TinyCNN()
    load_into(net, load_state_dict_file(path), str(path))
    arch = {"name": "brainnet-tiny", "widths": list(TINY_WIDTHS)}
    bb = TinyBackbone(net, arch, _input(image_size), layers)
    bb.weights_source = weights_label(weights, None if weights is not None else f"shipped:{file_sha256(path)[:12]}")
    return bb
