"""Adapter for open_clip vision towers (ViT-B-16, ViT-L-14, ...), one tap per residual block.

The per-block loop is written here (not open_clip's ``forward_intermediates``) so it works across
open_clip versions: older towers run their transformer sequence-first (``batch_first`` missing or
False), newer ones batch-first. Token 0 is the class token (global); the rest form the patch grid.
Normalisation is CLIP's own mean / std, not ImageNet's. Named configs load published weights by
default (:data:`DEFAULT_TAGS`); ``open_clip:<config>@<tag>`` picks another tag.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from brainnet.errors import WeightsUnavailableError

from .base import CLIP_MEAN, CLIP_STD, Backbone, InputConfig, resolve_layer_indices
from .registry import register_backbone
from .weights import (
    hf_cached_file,
    how_to_provide,
    load_into,
    load_state_dict_file,
    require_download,
    strip_prefix,
    weights_label,
)

#: Published weights each named OpenCLIP config loads by default. ViT-B-16: DataComp-L (1.28 B samples
#: seen), the tower Brain Decodes Deep Nets read out; ViT-L-14: DataComp-XL (13 B samples seen), the
#: ViT-L release of the same data family.
DEFAULT_TAGS: dict[str, str] = {"ViT-B-16": "datacomp_l_s1b_b8k", "ViT-L-14": "datacomp_xl_s13b_b90k"}
#: Separates config and pretrained tag in prefix names: 'open_clip:ViT-B-16@laion2b_s34b_b88k'.
TAG_SEP = "@"


class OpenClipBackbone(Backbone):
    """An open_clip ``VisionTransformer`` behind ``get_tokens``.

    Args:
        visual: the vision tower (``model.visual``).
        arch: JSON-able description.
        input_config: input size (the tower's image size) and CLIP normalisation.
        layers: timm-style selection of residual blocks.
    """

    def __init__(self, visual, arch: dict, input_config: InputConfig, layers=None):
        needed = ("conv1", "class_embedding", "positional_embedding", "transformer")
        if not all(hasattr(visual, a) for a in needed):
            raise TypeError(
                f"{type(visual).__name__} is not an open_clip VisionTransformer "
                "(timm-trunk towers: use the timm adapter)"
            )
        blocks = visual.transformer.resblocks
        n_taps = len(blocks)
        indices = resolve_layer_indices(n_taps, layers)
        patch = visual.conv1.kernel_size[0]
        g = input_config.size // patch
        width = visual.conv1.out_channels
        super().__init__(
            arch=arch, input_config=input_config, n_taps=n_taps, indices=indices,
            widths=[width] * len(indices), grid_sizes=[(g, g)] * len(indices),
        )
        # stop at the last tap: later blocks, ln_post, proj and pooling are never used
        visual.transformer.resblocks = blocks[: max(indices) + 1]
        self.visual = visual
        self.batch_first = bool(getattr(visual.transformer, "batch_first", False))

    def _forward_taps(self, x, take):
        v = self.visual
        x = v.conv1(x)  # [B, W, gh, gw]
        b, c, gh, gw = x.shape
        x = x.reshape(b, c, gh * gw).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype).reshape(1, 1, c).expand(b, 1, c)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        x = v.patch_dropout(x) if hasattr(v, "patch_dropout") else x
        x = v.ln_pre(x)
        if not self.batch_first:
            x = x.permute(1, 0, 2)  # NLD -> LND
        wanted = set(take)
        out = []
        for i, blk in enumerate(v.transformer.resblocks):
            x = blk(x)
            if i in wanted:
                t = x if self.batch_first else x.permute(1, 0, 2)
                local = t[:, 1:].transpose(1, 2).reshape(b, c, gh, gw)
                out.append((local, t[:, 0]))
            if i >= take[-1]:
                break
        return out


def _vision_tower(model_name: str, vision_cfg: dict | None, image_size: int | None, quick_gelu: bool):
    """Build only the vision tower (no text tower) from a named config or an explicit vision_cfg."""
    import open_clip

    if vision_cfg is None:
        cfg = open_clip.get_model_config(model_name)
        if cfg is None:
            raise ValueError(f"open_clip has no model config {model_name!r} (see open_clip.list_models())")
        embed_dim, vcfg = cfg["embed_dim"], dict(cfg["vision_cfg"])
        quick_gelu = quick_gelu or bool(cfg.get("quick_gelu", False))
    else:
        embed_dim = int(vision_cfg.get("embed_dim", 64))
        vcfg = {k: v for k, v in vision_cfg.items() if k != "embed_dim"}
    if image_size is not None:
        vcfg["image_size"] = int(image_size)
    try:
        from open_clip.model import CLIPVisionCfg, _build_vision_tower

        visual = _build_vision_tower(embed_dim, CLIPVisionCfg(**vcfg), quick_gelu=quick_gelu)
    except ImportError:  # very old / new layouts: fall back to the whole model
        from open_clip.model import CLIP

        visual = CLIP(embed_dim, vcfg, {"layers": 1, "width": 64, "heads": 1}, quick_gelu=quick_gelu).visual
    return visual, vcfg, quick_gelu


def published_tag(model_name: str, pretrained: bool | str, vision_cfg: dict | None) -> str | None:
    """The open_clip pretrained tag to load: None for random weights (``pretrained`` False), the
    given tag, or for ``pretrained=True`` the default of :data:`DEFAULT_TAGS` (ValueError when the
    config has none, or for a custom ``vision_cfg``, which has no published weights)."""
    if not pretrained:
        return None
    if vision_cfg is not None:
        raise ValueError("a custom vision_cfg has no published weights; pass weights='random' (or a '-random' "
                         "name) or weights='/path/to/checkpoint.pt'")
    if isinstance(pretrained, str):
        return pretrained
    if model_name in DEFAULT_TAGS:
        return DEFAULT_TAGS[model_name]
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(model_name)
    raise ValueError(f"open_clip:{model_name} has no default pretrained tag; name one as "
                     f"'open_clip:{model_name}{TAG_SEP}<tag>' (tags: {tags}) or ask for weights='random'")


def build_open_clip_backbone(
    model_name: str = "ViT-B-16",
    pretrained: bool | str = True,
    weights: str | None = None,
    layers: int | Sequence[int] | None = None,
    image_size: int | None = None,
    vision_cfg: dict | None = None,
    quick_gelu: bool = False,
    cache_dir: str | None = None,
) -> OpenClipBackbone:
    """open_clip vision tower as a backbone.

    Args:
        model_name: open_clip config name (ignored when ``vision_cfg`` is given).
        pretrained: True = the published weights of :data:`DEFAULT_TAGS`, an open_clip pretrained
            tag (``"laion2b_s34b_b88k"``), or False = random initial weights.
        weights: local checkpoint: the tower's state_dict or a full CLIP state_dict ('visual.' keys
            used); wins over ``pretrained``.
        vision_cfg: explicit small config (e.g. ``{"layers": 2, "width": 64, "patch_size": 16,
            "image_size": 64, "head_width": 32}``) for tests; it has no published weights.
        quick_gelu: QuickGELU activations (set automatically for tags that need them, e.g. 'openai').
    """
    tag = None if weights is not None else published_tag(model_name, pretrained, vision_cfg)
    if tag:
        import open_clip

        pcfg = open_clip.get_pretrained_cfg(model_name, tag)
        if not pcfg:
            raise ValueError(f"open_clip has no pretrained tag {tag!r} for {model_name!r} "
                             f"(tags: {open_clip.list_pretrained_tags_by_model(model_name)})")
        quick_gelu = quick_gelu or bool(pcfg.get("quick_gelu", False))
        cached = False
        if pcfg.get("hf_hub"):
            repo = pcfg["hf_hub"].strip("/").split("/")
            files = ("open_clip_pytorch_model.bin", "open_clip_model.safetensors")
            cached = bool(hf_cached_file("/".join(repo[:2]), files))
        if not cached and pcfg.get("url"):
            root = cache_dir or os.path.expanduser("~/.cache/clip")
            cached = os.path.exists(os.path.join(root, os.path.basename(pcfg["url"])))
        if not cached:
            require_download(f"open_clip weights {model_name}/{tag}", "huggingface.co")
    visual, vcfg, quick_gelu = _vision_tower(model_name, vision_cfg, image_size, quick_gelu)
    if tag:
        import open_clip

        try:
            full = open_clip.create_model(model_name, pretrained=tag, cache_dir=cache_dir, force_image_size=image_size)
        except Exception as exc:  # download or checkpoint failure
            raise WeightsUnavailableError(
                f"loading open_clip {model_name}/{tag} failed: {exc}. " + how_to_provide()) from exc
        visual = full.visual
    elif weights is not None:
        load_into(visual, strip_prefix(load_state_dict_file(weights), "visual."), weights)
    mean, std = CLIP_MEAN, CLIP_STD
    pre = getattr(visual, "preprocess_cfg", None)
    if isinstance(pre, dict) and pre.get("mean") and pre.get("std"):
        mean, std = tuple(pre["mean"]), tuple(pre["std"])
    size = vcfg["image_size"] if isinstance(vcfg["image_size"], int) else vcfg["image_size"][0]
    arch = {"name": f"open_clip:{model_name if vision_cfg is None else 'custom'}", "vision_cfg": vcfg,
            "quick_gelu": quick_gelu}
    input_config = InputConfig(size=int(size), mean=mean, std=std, interpolation="bicubic")
    bb = OpenClipBackbone(visual, arch, input_config, layers)
    bb.weights_source = weights_label(weights, f"open_clip:{model_name}/{tag}" if tag else None)
    return bb


@register_backbone("open_clip", prefix=True,
                   description="open_clip vision tower: 'open_clip:<config>' or 'open_clip:<config>@<pretrained tag>'")
def _open_clip(model_name: str, pretrained=True, weights=None, layers=None, image_size=None, **kwargs):
    model_name, _, tag = model_name.partition(TAG_SEP)
    return build_open_clip_backbone(model_name, (tag or True) if pretrained else False, weights, layers, image_size,
                                    **kwargs)


@register_backbone("clip-vit-b-16", description=f"OpenCLIP ViT-B-16 vision tower ({DEFAULT_TAGS['ViT-B-16']}; "
                   "12 blocks, 224 px, CLIP normalisation)")
def _clip_b16(pretrained=True, weights=None, layers=None, image_size=None, **kwargs):
    return build_open_clip_backbone("ViT-B-16", pretrained, weights, layers, image_size, **kwargs)


@register_backbone("clip-vit-l-14", description=f"OpenCLIP ViT-L-14 vision tower ({DEFAULT_TAGS['ViT-L-14']}; "
                   "24 blocks, 224 px, CLIP normalisation)")
def _clip_l14(pretrained=True, weights=None, layers=None, image_size=None, **kwargs):
    return build_open_clip_backbone("ViT-L-14", pretrained, weights, layers, image_size, **kwargs)
