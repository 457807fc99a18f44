"""The FactorTopy run behind the brain-to-network maps (notebook 04), on the one training path.

* :func:`network_features` / :func:`standardize_tokens` / :func:`image_tokens` — a backbone's
  cached tokens z-scored per channel, so backbones whose activation scale differs between
  layers (an untrained CNN's shrinks ~2.6x per stage) are compared on an equal footing, and one
  image's tokens standardised the same way (a backbone fed with another mean / std, as Brain
  Decodes Deep Nets fed every backbone ImageNet's: :meth:`brainnet.backbones.Backbone.set_normalization`).

The run's settings (TrainConfig, model options, backbones, analysis) are
:class:`brainnet.training.b2n_config.B2NConfig` presets; the maps read off the trained model are
in :mod:`brainnet.analysis.brain_to_network`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch

from brainnet.training.features import build_features

__all__ = ["TokenStats", "image_tokens", "network_features", "standardize_tokens"]


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class TokenStats:
    """Per-channel mean / sd of cached tokens (layer -> float32 (C,)), for :func:`standardize_tokens`."""

    local_mean: dict
    local_std: dict
    global_mean: dict
    global_std: dict

    def apply(self, local: Mapping, glob: Mapping) -> tuple[dict, dict]:
        """Standardise token dicts (layer -> (B, C, h, w) / (B, C) arrays or tensors); float32 tensors."""
        out_l, out_g = {}, {}
        for name, x in local.items():
            x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).float()
            m, s = (torch.from_numpy(a[name]).view(1, -1, 1, 1) for a in (self.local_mean, self.local_std))
            out_l[name] = (x - m) / s
        for name, x in glob.items():
            x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).float()
            out_g[name] = (x - torch.from_numpy(self.global_mean[name])) / torch.from_numpy(self.global_std[name])
        return out_l, out_g


def standardize_tokens(features):
    """z-score every channel of a :class:`~brainnet.training.batches.FeatureSet`'s tokens.

    Local maps are standardised over images and positions, global tokens over images (sd floor
    1e-6). Returns ``(new FeatureSet (fp16 tokens), TokenStats)``; the memory vectors are kept.
    """
    local, glob = {}, {}
    lm, ls, gm, gs = {}, {}, {}, {}
    for name, a in features.local.items():
        x = np.asarray(a, dtype=np.float32)
        lm[name] = x.mean(axis=(0, 2, 3)).astype(np.float32)
        ls[name] = np.maximum(x.std(axis=(0, 2, 3)), 1e-6).astype(np.float32)
        local[name] = ((x - lm[name][None, :, None, None]) / ls[name][None, :, None, None]).astype(np.float16)
    for name, a in features.global_.items():
        x = np.asarray(a, dtype=np.float32)
        gm[name] = x.mean(axis=0).astype(np.float32)
        gs[name] = np.maximum(x.std(axis=0), 1e-6).astype(np.float32)
        glob[name] = ((x - gm[name]) / gs[name]).astype(np.float16)
    new = replace(features, local=local, global_=glob)
    return new, TokenStats(lm, ls, gm, gs)


def network_features(data, backbone, pool: int | None = 8, standardize: bool = True):
    """A backbone's cached tokens of every image (:func:`brainnet.training.features.build_features`),
    z-scored per channel when ``standardize`` (:func:`standardize_tokens`).

    Parameters
    ----------
    data : prepared dataset (path or :class:`~brainnet.data.PreparedDataset`).
    backbone : registered name or a Backbone object (pass the object to reuse it for
        :func:`image_tokens`).

    Returns
    -------
    (FeatureSet, TokenStats or None)
    """
    features = build_features(data, backbone, pool=pool)
    if not standardize:
        return features, None
    return standardize_tokens(features)


def image_tokens(backbone, image: np.ndarray, token_stats: TokenStats | None = None) -> tuple[dict, dict]:
    """Unpooled tokens of one image, standardised like the training tokens when ``token_stats`` is given.

    Parameters
    ----------
    backbone : a Backbone (``get_tokens``); run in eval mode, its mode is restored.
    image : uint8 (S, S, 3), e.g. a row of :attr:`PreparedDataset.images`.

    Returns
    -------
    (local, global): layer -> float32 tensors (1, C, h, w) / (1, C).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (S, S, 3), got {image.shape}")
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255.0
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            local, glob = backbone.get_tokens(pixels)
    finally:
        backbone.train(was_training)
    if token_stats is not None:
        return token_stats.apply(local, glob)
    return ({k: v.float() for k, v in local.items()}, {k: v.float() for k, v in glob.items()})


