"""fp16 token cache: backbone tokens computed once, in batches, stored compactly.

What the reference (Brain Decodes Deep Nets) did and what this does instead:

* reference: one image at a time (batch size 1), fp32 tensors in a Python dict keyed by the float
  sum of the image tensor (collisions possible), no check of which backbone made them;
* here: a DataLoader decodes and resizes images in worker processes while the backbone runs under
  ``torch.inference_mode`` in batches, stopping after the last cached layer (on the CPU the
  workers also run the forward pass, one thread each: ``fill(forward=...)``);
  local maps are pooled to ``pool x pool`` on the fly and written as fp16 into preallocated
  contiguous arrays (one per layer) in RAM or in disk-backed ``np.memmap`` files; rows are found by
  dataset image id, and the whole cache is keyed by backbone fingerprint + layers + pooling +
  input transform, so a stale cache is never reused (the key is in the directory name and header).

The RAM budget is checked before anything large is allocated.

Modules: :mod:`.transforms` (image decode / resize, map pooling), :mod:`.store` (cache key, row
arrays, budget, lookup: :class:`TokenStore`), :mod:`.fill` (computing rows: :class:`TokenCache`,
:func:`global_features`).

>>> cache = TokenCache(create_backbone("brainnet-tiny"), pool=8)
>>> cache.fill(images_uint8, ids=range(len(images_uint8)))      # images: [N, S, S, 3] uint8
>>> local, glob = cache.get([0, 5, 7])   # local["3"]: [3, 192, 4, 4] fp16 (grids < pool are kept)
"""

from .fill import TokenCache, global_features
from .store import CACHE_FORMAT_VERSION, CacheBudgetError, CacheSpec, TokenStore, available_ram_bytes
from .transforms import RESIZE_METHOD, load_resized, pool_map

__all__ = ["CACHE_FORMAT_VERSION", "CacheBudgetError", "CacheSpec", "RESIZE_METHOD", "TokenCache", "TokenStore",
           "available_ram_bytes", "global_features", "load_resized", "pool_map"]
