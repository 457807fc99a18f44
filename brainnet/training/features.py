"""Build the cached inputs of a prepared dataset: backbone tokens and memory-image vectors."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from brainnet.data.prepared import PreparedDataset
from brainnet.errors import WeightsUnavailableError

from .batches import FeatureSet


def resolve_backbone(name: str, layers=None, fallback: str = "brainnet-tiny-random", **kwargs):
    """``create_backbone(name)`` (published weights unless the name ends in ``-random``); when its
    weights are missing, warn and use ``fallback``.

    Only the shipped ``brainnet-tiny`` falls back (to its random-init twin); for every other name
    missing weights raise :class:`~brainnet.errors.WeightsUnavailableError`, never a random tower.
    """
    from brainnet.backbones import create_backbone

    try:
        return create_backbone(name, layers=layers, **kwargs)
    except WeightsUnavailableError as err:
        if name != "brainnet-tiny" or not fallback:
            raise
        warnings.warn(f"{err}; using {fallback!r} instead (train the shipped weights to get "
                      "'brainnet-tiny', or pass backbone=... explicitly)", RuntimeWarning, stacklevel=2)
        return create_backbone(fallback, layers=layers, **kwargs)


def build_features(root: str | Path | PreparedDataset, backbone: str | object = "brainnet-tiny",
                   layers: Sequence | None = None, pool: int | None = 8, memory_layer: str | int | None = None,
                   memory_backbone: str | object | None = None, batch_size: int = 64, num_workers: int = 0,
                   storage: str = "ram", cache_dir: str | Path | None = None, budget_bytes: int | None = None,
                   standardize_memory: bool = True, progress: bool = False) -> FeatureSet:
    """Tokens of every image of a prepared dataset, and one memory vector per image.

    Parameters
    ----------
    root : a prepared dataset or its directory (its :attr:`~brainnet.data.PreparedDataset.images`,
        uint8 (n_images, S, S, 3))
    backbone : registered name or a Backbone object (current-image tokens)
    layers : layers to cache (None = all of the backbone's taps)
    pool : local maps pooled to ``pool x pool``
    memory_layer : which cached layer's global token is the memory vector (default: the last);
        with ``memory_backbone`` it names that backbone's layer instead
    memory_backbone : another backbone for the memory vectors (default: the same tokens)
    storage, cache_dir, budget_bytes : see :class:`brainnet.cache.TokenCache`
    standardize_memory : z-score each memory dimension over the images (the memory MLPs then
        see unit-scale inputs whatever the backbone's activation scale)

    Returns
    -------
    FeatureSet: fp16 tokens per image row and float32 ``memory`` (n_images, D), with the
    backbone's name and ``weights_id`` (``.backbone``, ``.weights``). With
    ``storage="memmap"`` the tokens stay in read-only memmap files under ``cache_dir`` (batches
    read their rows from disk); with "ram" they are held in memory.
    """
    from brainnet.cache import TokenCache, global_features

    dataset = PreparedDataset.open(root)
    root = dataset.root
    images = dataset.images
    bb = resolve_backbone(backbone, layers=None) if isinstance(backbone, str) else backbone
    name = backbone if isinstance(backbone, str) else type(backbone).__name__
    cache = TokenCache(bb, pool=pool, layers=layers, storage=storage, cache_dir=cache_dir,
                       namespace=str(root.resolve()), budget_bytes=budget_bytes)
    cache.fill(images, ids=range(len(images)), batch_size=batch_size, num_workers=num_workers, progress=progress)
    if memory_backbone is None:
        if memory_layer is None:
            mem_name = cache.layers[-1]
        elif isinstance(memory_layer, int):
            mem_name = cache.layers[memory_layer]
        else:
            mem_name = str(memory_layer)
        if mem_name not in cache.layers:
            raise ValueError(f"memory_layer {memory_layer!r} is not a cached layer ({cache.layers})")
        memory = cache.get(range(len(images)))[1][mem_name]
    else:
        mb = resolve_backbone(memory_backbone) if isinstance(memory_backbone, str) else memory_backbone
        memory = global_features(mb, images, layer=memory_layer, batch_size=batch_size,
                                 num_workers=num_workers, progress=progress)
    if standardize_memory:
        m = memory.float()
        memory = (m - m.mean(0)) / m.std(0).clamp_min(1e-6)
    local, glob = cache.arrays(range(len(images)))
    return FeatureSet(local=local, global_=glob, memory=memory.float().contiguous(), backbone=name,
                      weights=bb.weights_id)
