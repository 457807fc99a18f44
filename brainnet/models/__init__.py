"""brainnet.models: encoding models (tensors in, per-vertex predictions out).

* :class:`EncodingModel`: the interface every model offers (``forward(batch) -> (B, V)``,
  ``positions``, ``layer_weights``, ``scale``, ``regularizer``, ``config``).
* registry: :func:`create_model` (``"mem"``, ``"factortopy"``, ``"lag"``), :func:`register_model`,
  :func:`list_models`, :func:`model_entry`.
* :class:`FactorTopy` / :class:`FactorTopyConfig`: network-to-brain model with per-vertex
  layer / space / scale selectors.
* :class:`MemModel` / :class:`MemConfig`: memory encoding model (current image, memory images,
  behaviour, time), :func:`ablation_config` for the ablation table, :func:`gather_memory`.
* :class:`MemEnsemble` / :class:`MemEnsembleConfig`: several MemModel members (one per vertex group of a
  partition) trained as one model, for the ROI-model ensemble (:mod:`brainnet.training.ensemble`).
* :class:`LagModel` / :class:`LagConfig`: one-image model for the memory-replay grid.
* :class:`BackboneInLoop` / :class:`AdaptConfig`: any of them with the backbone in the loop,
  adapted by LoRA and / or behaviour-conditioned AdaLN-zero.
* configs: :class:`DictConfig` (the dict round-trip of every config), :class:`SelectorConfig`
  (fields shared by FactorTopyConfig and MemConfig).
* building blocks: :mod:`.selectors`, :mod:`.readout`, :mod:`.posenc`.
"""

from .configs import DictConfig, SelectorConfig
from .factortopy import FactorTopy, FactorTopyConfig
from .in_loop import AdaptConfig, BackboneInLoop
from .mem import MemModel, gather_memory
from .mem_config import ABLATIONS, MemConfig, ablation_config
from .mem_ensemble import MemEnsemble, MemEnsembleConfig
from .protocol import EncodingModel, check_encoding_model, missing_members
from .readout import SubjectReadouts, VertexReadout
from .registry import ModelEntry, create_model, describe_models, list_models, model_entry, register_model
from .replay import LagConfig, LagModel
from .selectors import LayerSelector, RetinaMapper, ScaleSelector, linear_decay, selector_regularizer

__all__ = [
    "ABLATIONS", "AdaptConfig", "BackboneInLoop", "DictConfig", "EncodingModel", "FactorTopy", "FactorTopyConfig",
    "check_encoding_model", "missing_members",
    "LagConfig", "LagModel", "LayerSelector", "MemConfig", "MemEnsemble", "MemEnsembleConfig", "MemModel",
    "ModelEntry", "RetinaMapper", "ScaleSelector",
    "SelectorConfig", "SubjectReadouts", "VertexReadout", "ablation_config", "create_model", "describe_models",
    "gather_memory", "linear_decay", "list_models", "model_entry", "register_model", "selector_regularizer",
]
