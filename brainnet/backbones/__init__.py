"""Vision backbones behind one API: ``get_tokens(images) -> (local, global)``.

``local[name]`` is [B, C, H, W] (patch / feature grid, prefix tokens removed), ``global[name]``
is [B, C]; names in network order. Images are float [B, 3, H, W] in [0, 1]; each backbone
resizes and normalises them itself (CLIP's constants differ from ImageNet's).

>>> bb = create_backbone("brainnet-tiny")          # offline, shipped weights
>>> bb = create_backbone("clip-vit-b-16")          # published weights: cached, or downloaded
>>> bb = create_backbone("timm:vit_base_patch16_224-random", layers=[2, 5, 8, 11])  # random init
>>> bb = create_backbone("sam-vit-b", weights="/path/sam_vit_b_01ec64.pth")         # a local file
>>> bb.weights_id                                  # e.g. "open_clip:ViT-B-16/datacomp_l_s1b_b8k"
>>> list_backbones()

Trainable adapters inside a frozen backbone: :func:`add_lora`, :class:`AdaLNZero`
(:mod:`.adapters`).
"""

# the adapter modules register their backbones on import
from . import hub_backbone, module_backbone, open_clip_backbone, sam_backbone, timm_backbone, tiny  # noqa: F401
from .adapters import AdaLNZero, LoRAConv2d, LoRALinear, add_lora
from .base import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Backbone, InputConfig, resolve_layer_indices
from .module_backbone import ModuleBackbone, wrap_module
from .registry import create_backbone, describe_backbones, list_backbones, register_backbone
from .tiny import TinyCNN, tiny_record

__all__ = [
    "AdaLNZero",
    "LoRAConv2d",
    "LoRALinear",
    "add_lora",
    "Backbone",
    "InputConfig",
    "ModuleBackbone",
    "TinyCNN",
    "create_backbone",
    "describe_backbones",
    "list_backbones",
    "register_backbone",
    "resolve_layer_indices",
    "tiny_record",
    "wrap_module",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CLIP_MEAN",
    "CLIP_STD",
]
