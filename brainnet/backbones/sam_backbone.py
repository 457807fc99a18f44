"""segment_anything ViT image encoder, one tap per block; global = spatial mean (SAM has no CLS token).

The encoder is built at ``image_size`` (1024 for the published weights; smaller for tests). Blocks
work on channels-last grids [B, H, W, C]; the neck is never run.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

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
    strip_prefix,
    torch_hub_checkpoints_dir,
    weights_label,
)

SAM_CONFIGS: dict[str, dict] = {
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
}
SAM_URLS: dict[str, str] = {
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
}


class SamBackbone(Backbone):
    """SAM ``ImageEncoderViT`` behind ``get_tokens``."""

    def __init__(self, encoder: nn.Module, arch: dict, input_config: InputConfig, layers=None):
        n_taps = len(encoder.blocks)
        indices = resolve_layer_indices(n_taps, layers)
        patch = encoder.patch_embed.proj.kernel_size[0]
        g = input_config.size // patch
        width = encoder.patch_embed.proj.out_channels
        super().__init__(
            arch=arch, input_config=input_config, n_taps=n_taps, indices=indices,
            widths=[width] * len(indices), grid_sizes=[(g, g)] * len(indices),
        )
        encoder.blocks = encoder.blocks[: max(indices) + 1]
        encoder.neck = nn.Identity()  # never used; keeps the digest and memory to what runs
        self.encoder = encoder

    def _forward_taps(self, x, take):
        enc = self.encoder
        x = enc.patch_embed(x)  # [B, H, W, C]
        if enc.pos_embed is not None:
            x = x + enc.pos_embed
        wanted = set(take)
        out = []
        for i, blk in enumerate(enc.blocks):
            x = blk(x)
            if i in wanted:
                local = x.permute(0, 3, 1, 2)
                out.append((local, local.mean((2, 3))))
            if i >= take[-1]:
                break
        return out


def build_sam_backbone(
    variant: str = "vit_b",
    pretrained: bool = True,
    weights: str | None = None,
    layers: int | Sequence[int] | None = None,
    image_size: int | None = None,
    window_size: int = 14,
    **overrides,
) -> SamBackbone:
    """SAM image encoder as a backbone.

    Args:
        variant: 'vit_b', 'vit_l' or 'vit_h' (published configs).
        pretrained: load the published SAM checkpoint (from $TORCH_HOME/hub/checkpoints or network);
            only at image_size 1024 and the published architecture; False = random initial weights.
        weights: local checkpoint, a full SAM state_dict ('image_encoder.' keys) or the encoder's own.
        image_size: input side (default 1024; a multiple of 16).
        window_size, **overrides: architecture overrides (embed_dim, depth, num_heads,
            global_attn_indexes) for small test encoders.
    """
    from segment_anything.modeling import ImageEncoderViT

    if variant not in SAM_CONFIGS:
        raise ValueError(f"unknown SAM variant {variant!r}; choose from {list(SAM_CONFIGS)}")
    size = int(image_size) if image_size is not None else 1024
    if size % 16:
        raise ValueError(f"SAM image_size must be a multiple of 16, got {size}")
    cfg = {**SAM_CONFIGS[variant], **overrides}
    cfg["global_attn_indexes"] = tuple(cfg["global_attn_indexes"])
    load_pretrained = bool(pretrained) and weights is None
    if load_pretrained and (size != 1024 or cfg != SAM_CONFIGS[variant] or window_size != 14):
        raise ValueError("SAM's published weights are for image_size=1024 and the published architecture; "
                         "for a smaller or changed encoder pass weights='random' (or a '-random' name) or a checkpoint")
    ckpt = torch_hub_checkpoints_dir() / SAM_URLS[variant].split("/")[-1]
    if load_pretrained and not ckpt.exists() and not network_available("dl.fbaipublicfiles.com"):
        raise WeightsUnavailableError(
            f"SAM {variant} weights are not at {ckpt} and cannot be downloaded. " + how_to_provide())
    encoder = ImageEncoderViT(
        img_size=size, patch_size=16, embed_dim=cfg["embed_dim"], depth=cfg["depth"], num_heads=cfg["num_heads"],
        mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
        global_attn_indexes=cfg["global_attn_indexes"], window_size=window_size, out_chans=256,
    )
    if load_pretrained:
        try:
            sd = torch.hub.load_state_dict_from_url(SAM_URLS[variant], map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:  # download or checkpoint failure
            raise WeightsUnavailableError(f"loading SAM {variant} weights failed: {exc}. " + how_to_provide()) from exc
        load_into(encoder, strip_prefix(sd, "image_encoder."), SAM_URLS[variant])
    elif weights is not None:
        load_into(encoder, strip_prefix(load_state_dict_file(weights), "image_encoder."), weights)
    arch = {"name": f"sam:{variant}", "cfg": cfg, "window_size": window_size, "image_size": size}
    bb = SamBackbone(encoder, arch, InputConfig(size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD), layers)
    bb.weights_source = weights_label(weights, f"sam:{ckpt.name}" if load_pretrained else None)
    return bb


def _sam(variant: str):
    def factory(pretrained=True, weights=None, layers=None, image_size=None, **kwargs):
        return build_sam_backbone(variant, pretrained, weights, layers, image_size, **kwargs)

    register_backbone(f"sam-{variant.replace('_', '-')}",
                      description=f"SAM {variant} image encoder (global = spatial mean)")(factory)


for _v in SAM_CONFIGS:
    _sam(_v)
