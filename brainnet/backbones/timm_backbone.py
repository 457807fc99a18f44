"""Adapter for timm models that implement ``forward_intermediates`` (ViT, DINOv2/EVA02 ViTs, ConvNeXt, ResNet, ...).

ViT-like models: one tap per block, local = patch grid (prefix tokens removed), global = CLS token
(or the patch mean when the model has no CLS token). CNNs: one tap per feature stage (timm's
``feature_info``), global = spatial mean of the stage's map.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Sequence

from brainnet.errors import WeightsUnavailableError

from .base import Backbone, InputConfig, resolve_layer_indices
from .registry import register_backbone
from .weights import (
    hf_cached_file,
    how_to_provide,
    load_into,
    load_state_dict_file,
    require_download,
    torch_hub_checkpoints_dir,
    weights_label,
)


def _pretrained_available(model_name: str) -> bool:
    """Whether timm would find the pretrained weights of ``model_name`` without a download."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None:
        return False
    if cfg.file and os.path.exists(cfg.file):
        return True
    if cfg.hf_hub_id:
        repo = cfg.hf_hub_id.split("@")[0]
        names = ((cfg.hf_hub_filename,) if cfg.hf_hub_filename
                 else ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"))
        if hf_cached_file(repo, names):
            return True
    return bool(cfg.url) and (torch_hub_checkpoints_dir() / cfg.url.split("/")[-1].split("?")[0]).exists()


class TimmBackbone(Backbone):
    """A timm model behind ``get_tokens``; see the module docstring for the token layout.

    Args:
        model: a timm model with ``forward_intermediates``.
        arch: JSON-able description (name, kwargs).
        input_config: input size and normalisation.
        layers: timm-style selection of taps.
        norm: apply the model's final norm to every tap (timm ``norm=True``); default False = raw taps.
    """

    def __init__(self, model, arch: dict, input_config: InputConfig, layers=None, norm: bool = False):
        if not hasattr(model, "forward_intermediates"):
            raise TypeError(
                f"timm model {arch.get('name')} has no forward_intermediates; it cannot be used as a backbone")
        info = list(model.feature_info)
        n_taps = len(info)
        indices = resolve_layer_indices(n_taps, layers)
        params = inspect.signature(model.forward_intermediates).parameters
        vit_like = "return_prefix_tokens" in params
        size = input_config.size
        if vit_like:
            gh, gw = (int(v) for v in model.patch_embed.grid_size)  # the model was built at this size
            grids = [(gh, gw)] * len(indices)
        else:
            grids = [(math.ceil(size / info[i]["reduction"]),) * 2 for i in indices]
        widths = [info[i]["num_chs"] for i in indices]
        super().__init__(
            arch={**arch, "norm": bool(norm)}, input_config=input_config, n_taps=n_taps, indices=indices,
            widths=widths, grid_sizes=grids,
        )
        self.vit_like = vit_like
        self.has_cls = vit_like and getattr(model, "cls_token", None) is not None
        self.norm = bool(norm)
        # drop blocks after the last tap and the classifier head: the forward stops there
        model.prune_intermediate_layers(self.indices, prune_norm=not norm, prune_head=True)
        self.model = model

    def _forward_taps(self, x, take):
        kw = dict(indices=list(take), norm=self.norm, stop_early=True, output_fmt="NCHW", intermediates_only=True)
        if self.vit_like:
            outs = self.model.forward_intermediates(x, return_prefix_tokens=True, **kw)
            res = []
            for spatial, prefix in outs:
                has_cls = self.has_cls and prefix is not None and prefix.shape[1] > 0
                glob = prefix[:, 0] if has_cls else spatial.mean((2, 3))
                res.append((spatial, glob))
            return res
        outs = self.model.forward_intermediates(x, **kw)
        return [(o, o.mean((2, 3))) for o in outs]


def build_timm_backbone(
    model_name: str,
    pretrained: bool = True,
    weights: str | None = None,
    layers: int | Sequence[int] | None = None,
    image_size: int | None = None,
    norm: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **model_kwargs,
) -> TimmBackbone:
    """Create ``timm.create_model(model_name)`` and wrap it (see :class:`TimmBackbone`).

    ``image_size`` is passed as ``img_size`` to models that take it (ViTs); CNNs take any size.
    ``mean`` / ``std`` default to the model's pretrained config (e.g. CLIP constants for CLIP ViTs).
    ``pretrained`` loads timm's published weights of ``model_name`` (its default tag, or the one
    named as in ``"resnet18.a1_in1k"``); False gives random initial weights; a local checkpoint
    ``weights`` wins over both.
    """
    import timm

    if not timm.is_model(model_name.split(".")[0]):
        raise ValueError(f"timm has no model {model_name!r} (see timm.list_models())")
    load_pretrained = bool(pretrained) and weights is None
    if load_pretrained and not _pretrained_available(model_name):
        require_download(f"timm pretrained weights for {model_name!r}", "huggingface.co")
    kw = dict(model_kwargs)
    if image_size is not None:
        kw["img_size"] = int(image_size)
    try:
        model = timm.create_model(model_name, pretrained=load_pretrained, **kw)
    except TypeError:
        if "img_size" not in kw:
            raise
        kw.pop("img_size")
        model = timm.create_model(model_name, pretrained=load_pretrained, **kw)
    except (OSError, RuntimeError) as exc:
        if load_pretrained:
            raise WeightsUnavailableError(
                f"loading timm weights for {model_name!r} failed: {exc}. " + how_to_provide()) from exc
        raise
    if weights is not None:
        load_into(model, load_state_dict_file(weights), weights)
    cfg = model.pretrained_cfg
    size = int(image_size) if image_size is not None else int(cfg.get("input_size", (3, 224, 224))[-1])
    inp = InputConfig(size=size, mean=tuple(mean or cfg.get("mean")), std=tuple(std or cfg.get("std")))
    arch = {"name": f"timm:{model_name}", "kwargs": {k: v for k, v in sorted(kw.items())}}
    bb = TimmBackbone(model, arch, inp, layers=layers, norm=norm)
    tagged = ".".join(p for p in (cfg.get("architecture") or model_name.split(".")[0], cfg.get("tag")) if p)
    bb.weights_source = weights_label(weights, f"timm:{tagged}" if load_pretrained else None)
    return bb


@register_backbone("timm", prefix=True, description="any timm model with forward_intermediates: 'timm:<model_name>'")
def _timm(model_name: str, pretrained=True, weights=None, layers=None, image_size=None, **kwargs):
    return build_timm_backbone(model_name, pretrained, weights, layers, image_size, **kwargs)


def _alias(name: str, model_name: str, description: str):
    def factory(pretrained=True, weights=None, layers=None, image_size=None, **kwargs):
        return build_timm_backbone(model_name, pretrained, weights, layers, image_size, **kwargs)

    register_backbone(name, description=description)(factory)


_alias("vit-b-16-imagenet", "vit_base_patch16_224.augreg2_in21k_ft_in1k", "supervised ImageNet ViT-B/16 (timm)")
_alias("mae-vit-b-16", "vit_base_patch16_224.mae", "MAE ViT-B/16 (timm)")
_alias("eva02-b-14", "eva02_base_patch14_224.mim_in22k", "EVA02-B/14 MIM in22k (timm)")
_alias("dinov2-vit-b-14-timm", "vit_base_patch14_dinov2.lvd142m", "DINOv2 ViT-B/14 through timm")
_alias("convnext-tiny", "convnext_tiny.fb_in1k", "ConvNeXt-T ImageNet (timm), 4 stages")
_alias("resnet50", "resnet50.a1_in1k", "ResNet-50 ImageNet (timm), stem + 4 stages")
