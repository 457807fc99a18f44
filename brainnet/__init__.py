"""brainnet: brain encoding models for NSD / Algonauts 2023 on the cortical surface.

Sub-packages
------------
data       NSD / Algonauts readers, nsd-mini generator, ``prepare``, torch ``Dataset``
backbones  ``get_tokens`` backbone API and adapters (timm, open_clip, DINOv2 hub, SAM)
cache      fp16 token cache
models     selectors (RetinaMapper, LayerSelector, ScaleSelector), FactorTopy, memory model
training   Lightning wrapper, metrics, soups, baselines, Ray Tune grids
analysis   memory replay, brain-to-network maps
plotting   fsaverage surface maps

Messages go to the ``brainnet`` logger (one child per module, ``logging.getLogger(__name__)``); the
package adds only a ``NullHandler``, so nothing is printed unless the application configures logging,
e.g. ``logging.basicConfig(level=logging.INFO)``. Progress bars stay tqdm's.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
