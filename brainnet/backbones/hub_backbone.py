"""DINOv2 (and DINOv2-like) models loaded through ``torch.hub``.

The model must offer ``get_intermediate_layers(x, n, reshape=True, return_class_token=True)``
(``n`` a list of block indices), ``blocks``, ``patch_size`` and ``embed_dim`` as the official
``facebookresearch/dinov2`` models do. No network is touched when the hub repository is already in
the torch hub cache (it is then loaded with ``source='local'``) or when ``repo`` is a local
directory holding a ``hubconf.py``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from brainnet.errors import WeightsUnavailableError

from .base import IMAGENET_MEAN, IMAGENET_STD, Backbone, InputConfig, resolve_layer_indices
from .registry import register_backbone
from .weights import (
    how_to_provide,
    load_into,
    load_state_dict_file,
    network_available,
    torch_hub_checkpoints_dir,
    weights_label,
)

DINOV2_REPO = "facebookresearch/dinov2"


class HubViTBackbone(Backbone):
    """A DINOv2-style ViT behind ``get_tokens``: local = patch grid, global = class token.

    Args:
        model: module with ``get_intermediate_layers``, ``blocks``, ``patch_size``, ``embed_dim``.
        arch: JSON-able description.
        input_config: input size (a multiple of the patch size) and normalisation.
        layers: timm-style selection of blocks.
        norm: apply the final norm to each tap (DINOv2's default, as in the Mem model).
    """

    def __init__(self, model: nn.Module, arch: dict, input_config: InputConfig, layers=None, norm: bool = True):
        for a in ("get_intermediate_layers", "blocks", "patch_size", "embed_dim"):
            if not hasattr(model, a):
                raise TypeError(f"hub model {type(model).__name__} lacks {a!r}; it is not DINOv2-like")
        patch = int(model.patch_size if not isinstance(model.patch_size, (tuple, list)) else model.patch_size[0])
        if input_config.size % patch:
            raise ValueError(f"input size {input_config.size} must be a multiple of the patch size {patch}")
        chunked = bool(getattr(model, "chunked_blocks", False))
        n_taps = int(getattr(model, "n_blocks", len(model.blocks)))
        indices = resolve_layer_indices(n_taps, layers)
        g = input_config.size // patch
        super().__init__(
            arch={**arch, "norm": bool(norm)}, input_config=input_config, n_taps=n_taps, indices=indices,
            widths=[int(model.embed_dim)] * len(indices), grid_sizes=[(g, g)] * len(indices),
        )
        if not chunked and isinstance(model.blocks, nn.ModuleList):
            model.blocks = model.blocks[: max(indices) + 1]  # stop at the last tap
        self.model = model
        self.norm = bool(norm)

    def _forward_taps(self, x, take):
        outs = self.model.get_intermediate_layers(x, n=list(take), reshape=True, return_class_token=True,
                                                  norm=self.norm)
        return [(local, cls) for local, cls in outs]


def _hub_cache_dir(repo: str) -> Path | None:
    """The torch hub cache folder of a github repo 'owner/name[:ref]', if already downloaded."""
    owner_name, _, ref = repo.partition(":")
    owner, _, name = owner_name.partition("/")
    for r in ([ref] if ref else ["main", "master"]):
        d = Path(torch.hub.get_dir()) / f"{owner}_{name}_{r}"
        if (d / "hubconf.py").exists():
            return d
    return None


def build_hub_backbone(
    model_name: str,
    repo: str = DINOV2_REPO,
    source: str = "github",
    pretrained: bool = True,
    weights: str | None = None,
    layers: int | Sequence[int] | None = None,
    image_size: int | None = None,
    norm: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    default_size: int = 224,
    **hub_kwargs,
) -> HubViTBackbone:
    """``torch.hub.load(repo, model_name)`` wrapped as a backbone.

    Args:
        model_name: hub entry point, e.g. 'dinov2_vitb14'.
        repo: 'owner/name' on GitHub, or a local directory with hubconf.py (use source='local').
        source: 'github' or 'local'.
        pretrained: load the entry point's published weights (needs them in
            $TORCH_HOME/hub/checkpoints, or network); False = random initial weights.
        weights: local state_dict to load instead (the hub model is then built with pretrained=False).
        image_size: input side (default ``default_size``; DINOv2 takes any multiple of 14).
    """
    if source not in ("github", "local"):
        raise ValueError(f"source must be 'github' or 'local', got {source!r}")
    if source == "local":
        if not (Path(repo) / "hubconf.py").is_file():
            raise FileNotFoundError(f"{repo} has no hubconf.py; pass a torch hub repository directory")
        repo_dir = str(repo)
    else:
        cached = _hub_cache_dir(repo)
        if cached is not None:
            repo_dir = str(cached)
        else:
            if not network_available("github.com"):
                raise WeightsUnavailableError(
                    f"torch hub repository {repo!r} is not in {torch.hub.get_dir()} and GitHub cannot be reached. "
                    f"Clone it elsewhere, copy it there, and pass repo='/path/to/clone', source='local'. "
                    + how_to_provide()
                )
            repo_dir = None
    load_pretrained = bool(pretrained) and weights is None
    if load_pretrained and not network_available("dl.fbaipublicfiles.com"):
        stem = model_name.replace("_reg", "_reg4")
        if not any(torch_hub_checkpoints_dir().glob(f"{stem}*.pth")):
            raise WeightsUnavailableError(
                f"pretrained weights of {model_name!r} are not in {torch_hub_checkpoints_dir()} "
                "and cannot be downloaded. "
                + how_to_provide()
            )
    try:
        if repo_dir is not None:
            model = torch.hub.load(repo_dir, model_name, source="local", pretrained=load_pretrained, **hub_kwargs)
        else:
            model = torch.hub.load(repo, model_name, source="github", pretrained=load_pretrained, trust_repo=True,
                                   **hub_kwargs)
    except (OSError, RuntimeError) as exc:
        if load_pretrained:
            raise WeightsUnavailableError(
                f"torch.hub could not load {repo}:{model_name}: {exc}. " + how_to_provide()) from exc
        raise
    if weights is not None:
        load_into(model, load_state_dict_file(weights), weights)
    size = int(image_size) if image_size is not None else int(default_size)
    where = os.path.abspath(repo) if source == "local" else repo
    arch = {"name": f"hub:{where}:{model_name}", "hub_kwargs": hub_kwargs}
    input_config = InputConfig(size=size, mean=tuple(mean), std=tuple(std), interpolation="bicubic")
    bb = HubViTBackbone(model, arch, input_config, layers, norm)
    bb.weights_source = weights_label(weights, f"torch-hub:{where}:{model_name}" if load_pretrained else None)
    return bb


@register_backbone("torch-hub", prefix=True,
                   description="DINOv2-like torch.hub model: 'torch-hub:<entry>' with repo=, source=")
def _torch_hub(model_name: str, pretrained=True, weights=None, layers=None, image_size=None, **kwargs):
    return build_hub_backbone(model_name, pretrained=pretrained, weights=weights, layers=layers,
                              image_size=image_size, **kwargs)


def _dinov2(entry: str, description: str):
    def factory(pretrained=True, weights=None, layers=None, image_size=None, **kwargs):
        return build_hub_backbone(entry, pretrained=pretrained, weights=weights, layers=layers,
                                  image_size=image_size, **kwargs)

    register_backbone(entry.replace("_", "-"), description=description)(factory)


_dinov2("dinov2_vits14", "DINOv2 ViT-S/14 via torch.hub (12 blocks, 384 wide)")
_dinov2("dinov2_vitb14", "DINOv2 ViT-B/14 via torch.hub (12 blocks, 768 wide)")
_dinov2("dinov2_vitl14", "DINOv2 ViT-L/14 via torch.hub (24 blocks, 1024 wide)")
_dinov2("dinov2_vitg14", "DINOv2 ViT-g/14 via torch.hub (40 blocks, 1536 wide)")
