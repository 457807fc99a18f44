"""brainnet.models: encoding models (tensors in, per-vertex predictions out).

* :class:`FactorTopy` / :class:`FactorTopyConfig`: network-to-brain model with per-vertex
  layer / space / scale selectors.
* :class:`MemModel` / :class:`MemConfig`: memory encoding model (current image, memory images,
  behaviour, time), :func:`ablation_config` for the ablation table, :func:`gather_memory`.
* :class:`LagModel` / :class:`LagConfig`: one-image model for the memory-replay grid.
* :class:`BackboneInLoop` / :class:`AdaptConfig`: any of them with the backbone in the loop,
  adapted by LoRA and / or behaviour-conditioned AdaLN-zero.
* building blocks: :mod:`.selectors`, :mod:`.readout`, :mod:`.posenc`.
"""

from .factortopy import FactorTopy, FactorTopyConfig
from .in_loop import AdaptConfig, BackboneInLoop
from .mem import ABLATIONS, MemConfig, MemModel, ablation_config, gather_memory
from .readout import SubjectReadouts, VertexReadout
from .replay import LagConfig, LagModel
from .selectors import LayerSelector, RetinaMapper, ScaleSelector, linear_decay, selector_regularizer

__all__ = [
    "ABLATIONS", "AdaptConfig", "BackboneInLoop", "FactorTopy", "FactorTopyConfig", "LagConfig", "LagModel", "LayerSelector",
    "MemConfig", "MemModel", "RetinaMapper", "ScaleSelector", "SubjectReadouts", "VertexReadout",
    "ablation_config", "gather_memory", "linear_decay", "selector_regularizer",
]
