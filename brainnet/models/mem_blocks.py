"""Building blocks of :class:`~brainnet.models.MemModel`: conv heads, global-token heads and the
memory frames' time embedding (each variant chosen by a :class:`~brainnet.models.MemConfig` field)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

#: ``MemConfig.conv_head``: "project" = 1x1 conv to ``width`` then residual blocks at ``width``;
#: "input_width" = residual blocks at the backbone width, then a kxk conv (+ SiLU) to ``width``.
CONV_HEADS: tuple[str, ...] = ("project", "input_width")
#: ``MemConfig.global_head``: "linear" map or "mlp" (Linear(C, C), GELU, Linear(C, width)).
GLOBAL_HEADS: tuple[str, ...] = ("linear", "mlp")
#: ``MemConfig.global_pool``: "token" = the cached global token of every layer; "maxavg_nonlast" =
#: for every layer but the last, concat(spatial mean, spatial max) of its local map (2 C values).
GLOBAL_POOLS: tuple[str, ...] = ("token", "maxavg_nonlast")
#: ``MemConfig.time_embedding``: "learned" table per frame slot (shared by subjects) or
#: "sinusoidal_subject" (sinusoid of the slot -> subject-specific linear -> SiLU -> linear).
TIME_EMBEDDINGS: tuple[str, ...] = ("learned", "sinusoidal_subject")


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (B, C, h, w) map."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ResidualConvBlock(nn.Module):
    """``x + SiLU(LayerNorm(conv(x)))`` on (B, C, h, w) maps, 'same' padding."""

    def __init__(self, channels: int, kernel: int, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=bias)
        self.norm = ChannelLayerNorm(channels)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.norm(self.conv(x)))


class ConvHead(nn.Module):
    """Conv head (B, C_in, h, w) -> (B, width, h, w) of shape ``kind`` (see :data:`CONV_HEADS`).

    "project": 1x1 conv ``C_in -> width`` then ``n_blocks`` residual blocks at ``width``.
    "input_width": ``n_blocks`` bias-free residual blocks at ``C_in``, then a bias-free
    ``kernel x kernel`` conv ``C_in -> width`` and SiLU.
    """

    def __init__(self, in_channels: int, width: int, kernel: int, n_blocks: int, kind: str = "project"):
        super().__init__()
        if kind not in CONV_HEADS:
            raise ValueError(f"conv head must be one of {CONV_HEADS}, got {kind!r}")
        self.kind = kind
        if kind == "project":
            self.proj = nn.Conv2d(in_channels, width, 1)
            self.blocks = nn.Sequential(*[ResidualConvBlock(width, kernel) for _ in range(n_blocks)])
        else:
            self.blocks = nn.Sequential(*[ResidualConvBlock(in_channels, kernel, bias=False)
                                          for _ in range(n_blocks)])
            self.proj = nn.Sequential(nn.Conv2d(in_channels, width, kernel, padding=kernel // 2, bias=False),
                                      nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "project":
            return self.blocks(self.proj(x))
        return self.proj(self.blocks(x))


def global_head(in_dim: int, width: int, kind: str = "linear") -> nn.Module:
    """Map of a global vector (B, in_dim) -> (B, width) of shape ``kind`` (see :data:`GLOBAL_HEADS`)."""
    if kind not in GLOBAL_HEADS:
        raise ValueError(f"global head must be one of {GLOBAL_HEADS}, got {kind!r}")
    if kind == "linear":
        return nn.Linear(in_dim, width)
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, width))


def maxavg_pool(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, 2C): concat(spatial mean, spatial max)."""
    return torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)


def global_in_dims(in_channels: Sequence[int], pool: str) -> tuple[int, ...]:
    """Size of each layer's global input under ``pool`` (see :data:`GLOBAL_POOLS`)."""
    if pool not in GLOBAL_POOLS:
        raise ValueError(f"global pool must be one of {GLOBAL_POOLS}, got {pool!r}")
    n = len(in_channels)
    return tuple(2 * c if pool == "maxavg_nonlast" and i < n - 1 else c for i, c in enumerate(in_channels))


def sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of positions t (n,) -> (n, dim): cosines then sines of ``dim // 2``
    frequencies geometric from 1 down to ``1 / max_period`` (a zero column appended for odd dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    out = torch.cat([args.cos(), args.sin()], dim=-1)
    return torch.cat([out, torch.zeros_like(out[:, :1])], dim=-1) if dim % 2 else out


class SubjectTimeEmbedding(nn.Module):
    """Time embedding of frame slots 0..n-1 -> (n, dim): a fixed sinusoid (``n_freq_dims``) ->
    subject-specific linear -> SiLU -> shared linear (each subject may run at its own clock)."""

    def __init__(self, subjects: Sequence[str], dim: int, n_freq_dims: int = 256, max_period: float = 10000.0):
        super().__init__()
        self.n_freq_dims, self.max_period = int(n_freq_dims), float(max_period)
        self.subject_in = nn.ModuleDict({s: nn.Linear(self.n_freq_dims, dim) for s in subjects})
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, subject: str, n: int, device=None) -> torch.Tensor:
        t = torch.arange(n, device=device)
        proj = self.subject_in[subject]
        return self.out(proj(sinusoid(t, self.n_freq_dims, self.max_period).to(proj.weight.dtype)))
