"""The interface every encoding model offers: :class:`EncodingModel`.

Training (:class:`brainnet.training.module.EncoderModule`), evaluation, checkpoints and the map
analyses use a model through these members only, so any model that has them can be trained and
mapped: :class:`~brainnet.models.FactorTopy`, :class:`~brainnet.models.MemModel`,
:class:`~brainnet.models.LagModel` and :class:`~brainnet.models.BackboneInLoop` (which passes
them to the model it wraps).

Models without a selector give NaN maps of the documented shape (e.g. ``MemModel.scale``, all of
``LagModel``'s maps) and models without a regulariser a zero one with weight 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class EncodingModel(Protocol):
    """A batch of one subject's trials -> predicted responses of that subject's vertices.

    Attributes
    ----------
    config : the model's config dataclass (a :class:`~brainnet.models.DictConfig`; saved with
        checkpoints)
    """

    config: Any

    def __call__(self, batch: Mapping[str, Any], vertex_idx: Any = None) -> torch.Tensor: ...

    def forward(self, batch: Mapping[str, Any], vertex_idx: Any = None) -> torch.Tensor:
        """Predict responses: batch (B trials, ``batch["subject"]`` one subject) -> (B, N), N = the
        subject's V_s vertices or ``len(vertex_idx)``."""
        ...

    @property
    def subjects(self) -> Sequence[str]:
        """Subjects the model has readouts for."""
        ...

    def n_vertices(self, subject: str) -> int:
        """V_s, the subject's vertex count."""
        ...

    def positions(self, subject: str) -> torch.Tensor:
        """Per-vertex image positions (V_s, 2), x right / y down in [-1, 1] (NaN: no retina selector)."""
        ...

    def layer_weights(self, subject: str) -> torch.Tensor:
        """Per-vertex layer weights (V_s, L), rows sum to 1 (NaN: no layer selector)."""
        ...

    def scale(self, subject: str) -> torch.Tensor:
        """Per-vertex local (0) .. global (1) mix (V_s,) (NaN: no scale selector)."""
        ...

    def regularizer(self, subject: str, vertex_idx: Any = None) -> torch.Tensor:
        """Unweighted scalar regulariser on the given vertices (a zero tensor: none)."""
        ...

    def regularizer_weight(self, step: int) -> float:
        """Weight of :meth:`regularizer` in the loss at a training step (0: not added)."""
        ...


def missing_members(obj: Any) -> list[str]:
    """Names of the :class:`EncodingModel` members ``obj`` lacks (empty: it is one)."""
    names = {*EncodingModel.__annotations__, *(n for n in vars(EncodingModel) if not n.startswith("_")), "__call__"}
    return sorted(n for n in names if not hasattr(obj, n))


def check_encoding_model(obj: Any) -> None:
    """Raise ``TypeError`` naming the missing members unless ``obj`` is an :class:`EncodingModel`."""
    missing = missing_members(obj)
    if missing:
        raise TypeError(f"{type(obj).__name__} is not a brainnet.models.EncodingModel: it lacks {missing}")
