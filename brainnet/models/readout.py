"""Per-vertex linear readouts, vertex chunking and per-subject routing.

A readout holds, for each of N vertices, a weight vector of the feature size D and a bias.
The prediction for vertex n is ``mean_d(feature[n, d] * weight[n, d]) + bias[n]``.
Large vertex counts are processed in chunks (``chunk_size``) and training may use a random
vertex subset (``vertex_idx``); both give the same numbers as the full computation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

#: Readout weight initialisations (see :class:`VertexReadout`).
READOUT_INITS: tuple[str, ...] = ("normal", "linear")


def subject_key(subject) -> str:
    """Normalise a batch's ``subject`` entry to one string key.

    Accepts a string, or a list / tuple of identical strings (what a DataLoader's default
    collate makes of per-sample strings). A batch must hold one subject only.
    """
    if isinstance(subject, str):
        key = subject
    elif isinstance(subject, (list, tuple)) and subject and all(isinstance(s, str) for s in subject):
        if len(set(subject)) != 1:
            raise ValueError(f"a batch must hold one subject, got {sorted(set(subject))}")
        key = subject[0]
    else:
        raise ValueError(f"subject must be a string (or a list of one repeated string), got {subject!r}")
    if not key or "." in key:
        raise ValueError(f"subject key must be non-empty and contain no '.', got {key!r}")
    return key


def check_vertex_idx(vertex_idx, n_vertices: int, device=None) -> torch.Tensor:
    """Validate and return vertex indices as a 1-D int64 tensor.

    Parameters
    ----------
    vertex_idx : array-like of shape (n,) or None
        None means all vertices ``0 .. n_vertices - 1``.
    n_vertices : int

    Out-of-range indices raise ValueError on the CPU; on a GPU the range is asserted on the device
    (``torch._assert_async``: the error surfaces at the next synchronisation as a device-side assert).
    """
    if vertex_idx is None:
        return torch.arange(n_vertices, device=device)
    idx = torch.as_tensor(vertex_idx, device=device)
    if idx.ndim != 1 or idx.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"vertex_idx must be a 1-D integer array, got shape {tuple(idx.shape)} "
                         f"dtype {idx.dtype}")
    idx = idx.long()
    if not idx.numel():
        return idx
    if idx.device.type == "cpu":
        if int(idx.min()) < 0 or int(idx.max()) >= n_vertices:
            raise ValueError(f"vertex_idx out of range [0, {n_vertices})")
    else:  # checked on the device, without waiting for it (no host synchronisation in a training step)
        torch._assert_async(((idx >= 0) & (idx < n_vertices)).all(), f"vertex_idx out of range [0, {n_vertices})")
    return idx


def map_vertex_chunks(fn: Callable[[torch.Tensor], torch.Tensor], vertex_idx: torch.Tensor,
                      chunk_size: int | None) -> torch.Tensor:
    """Apply ``fn`` to consecutive chunks of vertex indices and concatenate.

    Parameters
    ----------
    fn : callable
        ``fn(idx)`` with idx of shape (n_c,) returns a tensor of shape (B, n_c).
    vertex_idx : tensor of shape (n,)
    chunk_size : int or None
        Vertices per chunk; None or <= 0 = all at once.

    Returns
    -------
    tensor of shape (B, n)
    """
    if chunk_size is None or chunk_size <= 0 or chunk_size >= vertex_idx.numel():
        return fn(vertex_idx)
    return torch.cat([fn(part) for part in torch.split(vertex_idx, chunk_size)], dim=1)


def iter_vertex_chunks(n_vertices: int, chunk_size: int) -> Iterator[torch.Tensor]:
    """Yield index tensors covering ``0 .. n_vertices - 1`` in chunks of ``chunk_size``."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    for start in range(0, n_vertices, chunk_size):
        yield torch.arange(start, min(start + chunk_size, n_vertices))


def default_init_std(dim: int) -> float:
    """Fan-in scaled std of the readout weights at initialisation: ``1 / sqrt(3 D)``.

    It is the std of ``torch.nn.Linear``'s default initialisation U(-1/sqrt(D), 1/sqrt(D)), which both
    reference implementations use for their per-vertex weights. A start this small leaves the trained
    weights to the data: with std 1 and Adam steps of ~lr, a few hundred steps barely move the random
    start, so neighbouring vertices keep unrelated directions (salt-and-pepper channel maps).
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    return 1.0 / math.sqrt(3.0 * dim)


def _init_std(dim: int, init_std: float | None) -> float:
    if init_std is None:
        return default_init_std(dim)
    if not math.isfinite(init_std) or init_std < 0:
        raise ValueError(f"init_std must be a finite number >= 0 or None, got {init_std}")
    return float(init_std)


class VertexReadout(nn.Module):
    """Per-vertex linear readout.

    Parameters
    ----------
    n_vertices : int
        N, number of vertices.
    dim : int
        D, feature size.
    init_std : float or None
        Std of the normal initialisation of the weights (bias starts at 0) with ``init="normal"``;
        None: :func:`default_init_std` of D.
    init : str
        "normal" (weights ~ N(0, init_std^2), bias 0) or "linear" (weights and bias
        ~ U(-1/sqrt(D), 1/sqrt(D)), the default init of a ``nn.Linear(D, N)``).
    """

    def __init__(self, n_vertices: int, dim: int, init_std: float | None = None, init: str = "normal"):
        super().__init__()
        if n_vertices < 1 or dim < 1:
            raise ValueError(f"n_vertices and dim must be >= 1, got {n_vertices}, {dim}")
        if init not in READOUT_INITS:
            raise ValueError(f"readout init must be one of {READOUT_INITS}, got {init!r}")
        self.n_vertices = n_vertices
        self.dim = dim
        if init == "normal":
            self.weight = nn.Parameter(torch.randn(n_vertices, dim) * _init_std(dim, init_std))
            self.bias = nn.Parameter(torch.zeros(n_vertices))
        else:
            bound = dim ** -0.5
            self.weight = nn.Parameter(torch.empty(n_vertices, dim).uniform_(-bound, bound))
            self.bias = nn.Parameter(torch.empty(n_vertices).uniform_(-bound, bound))

    def forward(self, features: torch.Tensor | None, vertex_idx: torch.Tensor | None = None,
                shared: torch.Tensor | None = None, vertex_major: bool = False) -> torch.Tensor:
        """Predict vertex responses.

        The full feature vector of a vertex is ``concat(features[b, n], shared[b])``; its
        size must equal D. Passing the vertex-independent part as ``shared`` gives the same
        result as concatenating it to every vertex, without the (B, n, D) copy.

        Parameters
        ----------
        features : tensor of shape (B, n, D_v) (one feature vector per vertex), (B, D_v)
            (the same features for every vertex) or None (only ``shared``).
        vertex_idx : tensor of shape (n,), optional
            Which vertices (rows of the weight) the features belong to; None = all N.
        shared : tensor of shape (B, D_s), optional
            Features common to all vertices, appended after ``features``.
        vertex_major : bool
            3-D ``features`` are laid out (n, B, D_v) (as :func:`brainnet.models.mem.vertex_features`
            makes them): read with one batched product over vertices, several times faster on the CPU
            than the (B, n, D_v) layout's.

        Returns
        -------
        tensor of shape (B, n)
        """
        w, b = self._select(vertex_idx)
        d_v = 0 if features is None else features.shape[-1]
        self._check_dims(d_v, shared)
        out = 0.0
        if features is not None:
            wv = w[:, :d_v]
            if features.ndim == 2:
                out = features @ wv.t()
            elif features.ndim == 3:
                n_axis = 0 if vertex_major else 1
                if features.shape[n_axis] != w.shape[0]:
                    raise ValueError(f"features hold {features.shape[n_axis]} vertices, "
                                     f"readout selected {w.shape[0]}")
                if vertex_major:  # (n, 1, D_v) @ (n, D_v, B) -> (n, 1, B)
                    out = torch.bmm(wv[:, None, :], features.transpose(1, 2))[:, 0].t()
                else:
                    out = torch.einsum("bnd,nd->bn", features, wv)
            else:
                raise ValueError(f"features must be (B, n, D) or (B, D), got {tuple(features.shape)}")
        return self._finish(out, w, b, d_v, shared)

    def mixed(self, rows: Sequence[torch.Tensor], mix: Sequence[torch.Tensor], vertex_idx: torch.Tensor | None = None,
              shared: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`forward` of vertex-major features given per group of vertices as ``mix[g] @ rows[g]``, without
        forming them: each vertex's weights are contracted with its group's K rows first, (K * B, D_v) x
        (D_v, m), then mixed (K * B * m numbers instead of m * B * D_v). Same numbers as :meth:`forward`.

        Parameters
        ----------
        rows : per group a tensor of shape (K_g, B, D_v); mix : per group a tensor (m_g, K_g)
        vertex_idx : tensor of shape (n,), n = sum of m_g, the groups' vertices one group after the other
            (None: all N)
        shared : as in :meth:`forward`

        Returns
        -------
        tensor of shape (B, n)
        """
        w, b = self._select(vertex_idx)
        sizes = [m.shape[0] for m in mix]
        if len(rows) != len(mix) or sum(sizes) != w.shape[0]:
            raise ValueError(f"{len(rows)} row groups and {len(mix)} mix groups of {sum(sizes)} vertices "
                             f"for {w.shape[0]} selected vertices")
        d_v = rows[0].shape[-1]
        self._check_dims(d_v, shared)
        parts = []
        for r, m, wg in zip(rows, mix, torch.split(w[:, :d_v], sizes)):  # one gather / split, not one per group
            k, bsz, _ = r.shape
            if m.shape[1] != k:
                raise ValueError(f"mix has {m.shape[1]} columns for {k} rows")
            per_row = (r.reshape(k * bsz, d_v) @ wg.t()).view(k, bsz, -1)  # (K, B, m)
            parts.append((per_row * m.t().contiguous()[:, None, :]).sum(0))
        return self._finish(torch.cat(parts, dim=1), w, b, d_v, shared)

    def _select(self, vertex_idx: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if vertex_idx is None:
            return self.weight, self.bias
        return self.weight[vertex_idx], self.bias[vertex_idx]

    def _check_dims(self, d_v: int, shared: torch.Tensor | None) -> None:
        d_s = 0 if shared is None else shared.shape[-1]
        if d_v + d_s != self.dim:
            raise ValueError(f"feature sizes {d_v} + {d_s} do not add up to the readout's D={self.dim}")
        if shared is not None and shared.ndim != 2:
            raise ValueError(f"shared must be (B, D_s), got {tuple(shared.shape)}")

    def _finish(self, out, w: torch.Tensor, b: torch.Tensor, d_v: int, shared: torch.Tensor | None) -> torch.Tensor:
        """``(out + shared @ w_shared.T) / D + bias``: the vertex-independent part and the scaling."""
        if shared is not None:
            out = out + shared @ w[:, d_v:].t()
        return out / self.dim + b


class SubjectReadouts(nn.Module):
    """One :class:`VertexReadout` per subject (a ``ModuleDict`` keyed by subject).

    Parameters
    ----------
    n_vertices : mapping subject -> int
        Vertex count per subject.
    dim : int
        Feature size D.
    init_std, init : see :class:`VertexReadout` (init_std None: :func:`default_init_std`)
    """

    def __init__(self, n_vertices: Mapping[str, int], dim: int, init_std: float | None = None,
                 init: str = "normal"):
        super().__init__()
        if not n_vertices:
            raise ValueError("need at least one subject")
        self.readouts = nn.ModuleDict(
            {subject_key(s): VertexReadout(int(n), dim, init_std, init) for s, n in n_vertices.items()})

    @property
    def subjects(self) -> Sequence[str]:
        return list(self.readouts.keys())

    def __getitem__(self, subject: str) -> VertexReadout:
        key = subject_key(subject)
        if key not in self.readouts:
            raise KeyError(f"unknown subject {key!r}; known: {list(self.readouts.keys())}")
        return self.readouts[key]

    def forward(self, subject: str, features: torch.Tensor | None,
                vertex_idx: torch.Tensor | None = None,
                shared: torch.Tensor | None = None, vertex_major: bool = False) -> torch.Tensor:
        """Route to the subject's readout; shapes as :meth:`VertexReadout.forward`."""
        return self[subject](features, vertex_idx, shared, vertex_major)
