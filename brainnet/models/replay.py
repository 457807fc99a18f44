"""Memory-replay helper model: predict the response from ONE image's cached vectors.

Used by the memory-replay analysis: one :class:`LagModel` per (subject, lag T) predicts the
current trial's response from the image shown |T| slots earlier only. The image's per-layer
vectors are concatenated, passed through an MLP and read out per vertex.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .configs import DictConfig
from .readout import SubjectReadouts, check_vertex_idx, subject_key
from .registry import register_model
from .tokens import as_layer_list


@dataclass(frozen=True)
class LagConfig(DictConfig):
    """Hyper-parameters of :class:`LagModel`.

    Attributes
    ----------
    in_dims : tuple of int
        Size of each input vector (e.g. four layer vectors of a small backbone).
    hidden : int
        MLP hidden width.
    out_dim : int
        Feature size D fed to the per-vertex readout.
    dropout : float
    readout_init_std : float or None
        Readout weight init std; None: fan-in scaled (see
        :func:`brainnet.models.readout.default_init_std`).
    """

    in_dims: tuple[int, ...] = (384,) * 4
    hidden: int = 256
    out_dim: int = 64
    dropout: float = 0.1
    readout_init_std: float | None = None

    def __post_init__(self):
        if not self.in_dims or min(self.in_dims) < 1 or self.hidden < 1 or self.out_dim < 1:
            raise ValueError("in_dims, hidden and out_dim must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class LagModel(nn.Module):
    """Vectors of one image -> MLP -> per-vertex linear readout.

    Parameters
    ----------
    config : LagConfig
    n_vertices : mapping subject -> int

    ``forward(batch, vertex_idx=None)`` with ``batch = {"vectors": list / dict of (B, d_i)
    (one per ``in_dims`` entry), "subject": str}`` returns (B, N). Trials whose image slot is
    blank should be dropped by the caller (or passed as ``"valid"`` (B,) bool: their features
    are zeroed, so the prediction is the readout bias).
    """

    def __init__(self, config: LagConfig, n_vertices: Mapping[str, int]):
        super().__init__()
        self.config = config
        c = config
        self.mlp = nn.Sequential(
            nn.LayerNorm(sum(c.in_dims)), nn.Linear(sum(c.in_dims), c.hidden), nn.GELU(),
            nn.Dropout(c.dropout), nn.Linear(c.hidden, c.out_dim))
        self.readouts = SubjectReadouts(n_vertices, c.out_dim, c.readout_init_std)

    def features(self, batch: Mapping) -> torch.Tensor:
        """Image features (B, out_dim)."""
        c = self.config
        vecs = as_layer_list(batch["vectors"], len(c.in_dims), "vectors", ndim=2)
        for i, (v, d) in enumerate(zip(vecs, c.in_dims)):
            if v.shape[1] != d:
                raise ValueError(f"vectors[{i}]: expected size {d}, got {v.shape[1]}")
        dtype = self.mlp[1].weight.dtype
        h = self.mlp(torch.cat([v.to(dtype) for v in vecs], dim=1))
        if "valid" in batch:
            h = h * torch.as_tensor(batch["valid"], device=h.device).to(h.dtype)[:, None]
        return h

    def forward(self, batch: Mapping, vertex_idx=None) -> torch.Tensor:
        """Predict responses (B, N) for the batch's subject."""
        readout = self.readouts[subject_key(batch["subject"])]
        idx = None if vertex_idx is None else check_vertex_idx(
            vertex_idx, readout.n_vertices, device=readout.weight.device)
        return readout(self.features(batch), idx)

    # ---- EncodingModel members: no selectors, no regulariser ----
    @property
    def subjects(self) -> list[str]:
        return list(self.readouts.subjects)

    def n_vertices(self, subject: str) -> int:
        return self.readouts[subject_key(subject)].n_vertices

    def _nan_map(self, subject: str, *shape: int) -> torch.Tensor:
        readout = self.readouts[subject_key(subject)]
        return torch.full((readout.n_vertices, *shape), float("nan"), device=readout.weight.device)

    def positions(self, subject: str) -> torch.Tensor:
        """NaN (V_s, 2): every vertex reads the whole image's vectors (no retina selector)."""
        return self._nan_map(subject, 2)

    def layer_weights(self, subject: str) -> torch.Tensor:
        """NaN (V_s, L), L = ``len(in_dims)``: the layer vectors are concatenated (no layer selector)."""
        return self._nan_map(subject, len(self.config.in_dims))

    def scale(self, subject: str) -> torch.Tensor:
        """NaN (V_s,): no scale selector."""
        return self._nan_map(subject)

    def regularizer(self, subject: str, vertex_idx=None) -> torch.Tensor:
        """No regulariser: a zero scalar."""
        return self.readouts[subject_key(subject)].weight.new_zeros(())

    def regularizer_weight(self, step: int) -> float:
        return 0.0


def _build(config: LagConfig, coords: Mapping, hemi: Mapping) -> LagModel:
    """A LagModel with a readout for each subject's ``len(coords[subject])`` vertices."""
    return LagModel(config, {s: len(c) for s, c in coords.items()})


register_model("lag", LagModel, LagConfig, build=_build,
               description="one image's layer vectors -> MLP -> per-vertex readout (memory-replay grid)")
