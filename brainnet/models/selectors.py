"""Per-vertex selectors driven by vertex coordinates.

Each selector is a small MLP from the sinusoidal vertex encoding (see :mod:`posenc`) to a
per-vertex choice: where to look in the image (:class:`RetinaMapper`), which network layer to
read (:class:`LayerSelector`) and how much of the local vs. global token to use
(:class:`ScaleSelector`). The last MLP layer is zero-initialised, so at initialisation every
vertex looks at the image centre, weights layers uniformly and mixes local and global 50/50.

The selectors are shared by all subjects (their input is a position in the common fsaverage
space); only readouts are subject-specific.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .readout import subject_key


class CoordMLP(nn.Module):
    """MLP ``in_dim -> hidden (x n_hidden) -> out_dim`` with GELU; last layer zero-initialised.

    Parameters
    ----------
    in_dim, out_dim : int
    hidden : int
        Width of the hidden layers.
    n_hidden : int
        Number of hidden layers (>= 0).
    bias : bool
        Whether the linear layers have a bias (the reference is bias-free).
    zero_last : bool
        Zero-initialise the last layer (False: PyTorch's default random init, as the Memory
        Encoding Model's selectors).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 128, n_hidden: int = 2,
                 bias: bool = False, zero_last: bool = True):
        super().__init__()
        if min(in_dim, out_dim, hidden) < 1 or n_hidden < 0:
            raise ValueError("in_dim, out_dim and hidden must be >= 1 and n_hidden >= 0")
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(n_hidden):
            layers += [nn.Linear(width, hidden, bias=bias), nn.GELU()]
            width = hidden
        last = nn.Linear(width, out_dim, bias=bias)
        if zero_last:
            nn.init.zeros_(last.weight)
            if last.bias is not None:
                nn.init.zeros_(last.bias)
        layers.append(last)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, in_dim) -> (N, out_dim)."""
        return self.net(x)


class RetinaMapper(nn.Module):
    """Per-vertex image position ``(x, y)`` in ``[-1, 1]^2`` (x right, y down).

    The convention is that of :func:`torch.nn.functional.grid_sample` with
    ``align_corners=False``: -1 / +1 are the outer edges of the image.

    Parameters
    ----------
    in_dim : int
        Size of the vertex encoding.
    hidden, n_hidden : int
        MLP shape.
    jitter : float
        Std of Gaussian noise added to the positions in training mode (0: none); the noisy
        positions are clamped to ``[-1, 1]``.
    bias, zero_last : see :class:`CoordMLP`.
    """

    def __init__(self, in_dim: int, hidden: int = 128, n_hidden: int = 2, jitter: float = 0.0,
                 bias: bool = False, zero_last: bool = True):
        super().__init__()
        if jitter < 0:
            raise ValueError(f"jitter must be >= 0, got {jitter}")
        self.mlp = CoordMLP(in_dim, 2, hidden, n_hidden, bias, zero_last)
        self.jitter = float(jitter)

    def forward(self, pe: torch.Tensor) -> torch.Tensor:
        """pe (N, in_dim) -> positions (N, 2); jittered in training mode when jitter > 0."""
        xy = torch.tanh(self.mlp(pe))
        if self.training and self.jitter > 0:
            xy = (xy + self.jitter * torch.randn_like(xy)).clamp(-1.0, 1.0)
        return xy

    @torch.no_grad()
    def positions(self, pe: torch.Tensor) -> torch.Tensor:
        """Noise-free positions for maps: pe (N, in_dim) -> (N, 2)."""
        return torch.tanh(self.mlp(pe))


class LayerSelector(nn.Module):
    """Per-vertex softmax weights over ``n_layers`` network layers (uniform at init unless
    ``zero_last=False``; ``bias``, ``zero_last``: see :class:`CoordMLP`)."""

    def __init__(self, in_dim: int, n_layers: int, hidden: int = 128, n_hidden: int = 2,
                 bias: bool = False, zero_last: bool = True):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.n_layers = n_layers
        self.mlp = CoordMLP(in_dim, n_layers, hidden, n_hidden, bias, zero_last)

    def forward(self, pe: torch.Tensor) -> torch.Tensor:
        """pe (N, in_dim) -> layer weights (N, n_layers), rows sum to 1."""
        return torch.softmax(self.mlp(pe), dim=-1)

    @torch.no_grad()
    def layer_weights(self, pe: torch.Tensor) -> torch.Tensor:
        """Layer weights for maps: pe (N, in_dim) -> (N, n_layers)."""
        return self.forward(pe)


class ScaleSelector(nn.Module):
    """Per-vertex local/global mix ``s`` in (0, 1); feature = (1 - s) * local + s * global."""

    def __init__(self, in_dim: int, hidden: int = 128, n_hidden: int = 2):
        super().__init__()
        self.mlp = CoordMLP(in_dim, 1, hidden, n_hidden)

    def forward(self, pe: torch.Tensor) -> torch.Tensor:
        """pe (N, in_dim) -> s (N,)."""
        return torch.sigmoid(self.mlp(pe)[:, 0])

    @torch.no_grad()
    def scale(self, pe: torch.Tensor) -> torch.Tensor:
        """Scale for maps: pe (N, in_dim) -> (N,)."""
        return self.forward(pe)

    @staticmethod
    def mix(local: torch.Tensor, global_: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Mix features: local, global_ (B, N, D), s (N,) -> (B, N, D)."""
        s = s[None, :, None]
        return (1.0 - s) * local + s * global_


def normalized_entropy(weights: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Entropy of each row divided by ``log(L)``: weights (N, L) -> (N,) in [0, 1].

    With a single layer the entropy is defined as 0.
    """
    n_layers = weights.shape[-1]
    if n_layers < 2:
        return torch.zeros(weights.shape[:-1], dtype=weights.dtype, device=weights.device)
    h = -(weights * (weights + eps).log()).sum(-1)
    return h / math.log(n_layers)


def selector_regularizer(layer_weights: torch.Tensor | None = None,
                         scale: torch.Tensor | None = None) -> torch.Tensor:
    """Selector regulariser: ``mean(-normalized_entropy(layer_weights)) + mean((s - 0.5)^2)``.

    Minimising it keeps the layer weights spread out and ``s`` near 0.5, i.e. holds the
    selectors near their initial state; scale it by :func:`linear_decay` so this only acts
    early in training.

    Parameters
    ----------
    layer_weights : tensor of shape (N, L), optional
    scale : tensor of shape (N,), optional

    Returns
    -------
    scalar tensor
    """
    terms = []
    if layer_weights is not None:
        terms.append(-normalized_entropy(layer_weights).mean())
    if scale is not None:
        terms.append(((scale - 0.5) ** 2).mean())
    if not terms:
        raise ValueError("give layer_weights and/or scale")
    return torch.stack(terms).sum()


def linear_decay(step: int, initial: float, decay_steps: int) -> float:
    """Weight that falls linearly from ``initial`` at step 0 to 0 at ``decay_steps``.

    ``decay_steps <= 0`` means a constant weight ``initial``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if decay_steps <= 0:
        return float(initial)
    return float(initial) * max(0.0, 1.0 - step / decay_steps)


class SelectorMaps:
    """Per-vertex selector outputs for the maps, for models with ``vertices`` (VertexEncodings),
    ``retina`` (RetinaMapper), ``layer_selector`` (LayerSelector) and a ``config`` with the
    :class:`~brainnet.models.SelectorConfig` fields ``reg_weight`` / ``reg_decay_steps``."""

    def regularizer_weight(self, step: int) -> float:
        """Weight of the model's ``regularizer`` at a training step (linear decay to 0 over
        ``config.reg_decay_steps``; constant when that is <= 0)."""
        return linear_decay(step, self.config.reg_weight, self.config.reg_decay_steps)

    @property
    def subjects(self) -> list[str]:
        return self.vertices.subjects

    def n_vertices(self, subject: str) -> int:
        return self.vertices.n_vertices(subject_key(subject))

    def subject_selectors(self, subject: str) -> tuple[RetinaMapper, LayerSelector]:
        """(retina mapper, layer selector) of a subject: the shared pair, or the subject's own
        when the model keeps one per subject (``nn.ModuleDict`` keyed by subject)."""
        retina, layers = self.retina, self.layer_selector
        key = subject_key(subject)
        return (retina[key] if isinstance(retina, nn.ModuleDict) else retina,
                layers[key] if isinstance(layers, nn.ModuleDict) else layers)

    @torch.no_grad()
    def positions(self, subject: str) -> torch.Tensor:
        """Retina positions (V_s, 2), x right / y down in [-1, 1]."""
        return self.subject_selectors(subject)[0].positions(self.vertices.get(subject_key(subject)))

    @torch.no_grad()
    def layer_weights(self, subject: str) -> torch.Tensor:
        """Layer weights (V_s, L), rows sum to 1."""
        return self.subject_selectors(subject)[1].layer_weights(self.vertices.get(subject_key(subject)))
