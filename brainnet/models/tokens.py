"""Checks and conversions for the per-layer token inputs of the encoding models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F


def as_layer_list(tokens, n_layers: int, kind: str, names: Sequence[str] | None = None,
                  ndim: int | None = None) -> list[torch.Tensor]:
    """Turn a dict (keyed by layer name) or list of per-layer tensors into a checked list.

    Parameters
    ----------
    tokens : mapping name -> tensor or sequence of tensors
        ``local``: each (B, C_l, h, w); ``global``: each (B, C_l).
    n_layers : int
        Expected number of layers.
    kind : str
        Name used in error messages ("local" / "global").
    names : sequence of str, optional
        Layer order for dict inputs; None = the dict's own order.
    ndim : int, optional
        Expected number of dimensions of each tensor.
    """
    if isinstance(tokens, Mapping):
        if names:
            missing = [n for n in names if n not in tokens]
            if missing:
                raise ValueError(f"{kind} tokens lack layers {missing}; have {list(tokens)}")
            items = [tokens[n] for n in names]
        else:
            items = list(tokens.values())
    elif isinstance(tokens, Sequence) and not isinstance(tokens, (str, bytes)):
        items = list(tokens)
    else:
        raise ValueError(f"{kind} tokens must be a dict or list of tensors, got {type(tokens).__name__}")
    if len(items) != n_layers:
        raise ValueError(f"expected {n_layers} {kind} layers, got {len(items)}")
    for i, t in enumerate(items):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{kind} layer {i} is not a tensor ({type(t).__name__})")
        if ndim is not None and t.ndim != ndim:
            raise ValueError(f"{kind} layer {i} must have {ndim} dims, got shape {tuple(t.shape)}")
    batch = {t.shape[0] for t in items}
    if len(batch) != 1:
        raise ValueError(f"{kind} layers disagree on batch size: {sorted(batch)}")
    return items


#: Token-grid resizes of :func:`resize_map`.
RESIZE_MODES = ("area", "bilinear")
#: What bilinear sampling reads outside the token grid (:func:`bilinear_weights`).
PADDING_MODES = ("border", "zeros")


def resize_map(x: torch.Tensor, size: int | None, mode: str = "area") -> torch.Tensor:
    """Resize a feature map (B, C, h, w) to (B, C, size, size); None or same size = unchanged.

    ``mode`` "area": shrinking averages over areas (adaptive average pooling), growing is bilinear;
    "bilinear": bilinear interpolation both ways (``align_corners=False``, no antialiasing, so a
    shrink reads the four cells around each new centre).
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"mode must be one of {RESIZE_MODES}, got {mode!r}")
    if size is None or (x.shape[-2] == size and x.shape[-1] == size):
        return x
    if mode == "area" and x.shape[-2] >= size and x.shape[-1] >= size:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def bilinear_weights(xy: torch.Tensor, h: int, w: int, align_corners: bool = False,
                     padding: str = "border") -> torch.Tensor:
    """Bilinear interpolation weights of per-vertex positions over an ``h x w`` grid.

    Sampling a map at ``xy`` equals ``maps.flatten(2) @ weights.T``: each row holds the (at most
    four) non-zero tent weights ``max(0, 1 - |px - j|) * max(0, 1 - |py - i|)`` of the cells around
    the point, in the ``grid_sample`` convention. ``padding`` "border": coordinates are clamped to
    the outer cell centres (rows sum to 1); "zeros": cells outside the grid read 0 (their weights
    are dropped, so rows near the edge sum to less than 1). Gradients flow to ``xy``.

    Parameters
    ----------
    xy : tensor of shape (n, 2), positions in [-1, 1]^2 (x right, y down)
    h, w : grid size; align_corners : as in :func:`sample_maps`; padding : one of :data:`PADDING_MODES`

    Returns
    -------
    tensor of shape (n, h * w), cell (i, j) at column ``i * w + j``
    """
    def axis(t: torch.Tensor, size: int) -> torch.Tensor:
        pix = _grid_coord(t, size, align_corners, padding)
        centres = torch.arange(size, device=t.device, dtype=t.dtype)
        return _tent(pix[:, None] - centres[None])  # (n, size)

    wx, wy = axis(xy[:, 0], w), axis(xy[:, 1], h)
    return (wy[:, :, None] * wx[:, None, :]).reshape(xy.shape[0], h * w)


def _grid_coord(t: torch.Tensor, size: int, align_corners: bool, padding: str) -> torch.Tensor:
    """Positions t (n,) in [-1, 1] -> cell coordinates (cell j's centre at j), clamped for "border"."""
    if padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
    pix = (t + 1) / 2 * (size - 1) if align_corners else ((t + 1) * size - 1) / 2
    return pix.clamp(0, size - 1) if padding == "border" else pix


def _tent(offset: torch.Tensor) -> torch.Tensor:
    """Bilinear weight of a cell at ``offset`` cells from the point: ``max(0, 1 - |offset|)``."""
    return (1 - offset.abs()).clamp_min(0)


def bilinear_taps(xy: torch.Tensor, h: int, w: int, align_corners: bool = False,
                  padding: str = "border") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The non-zero columns of :func:`bilinear_weights`: each point's block of (at most) 2 x 2 cells.

    Returns
    -------
    base : long tensor (n,), the block's top-left cell ``i * w + j`` (points with equal base read the
        same cells); cells : long tensor (n, k), k = min(h, 2) * min(w, 2), the block's cells;
    weights : tensor (n, k), their weights (the same values and gradients as in bilinear_weights).
    """
    def axis(t: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        pix = _grid_coord(t, size, align_corners, padding)
        first = pix.detach().floor().clamp(0, max(size - 2, 0)).long()
        cells = first[:, None] + torch.arange(min(size, 2), device=t.device)
        return cells, _tent(pix[:, None] - cells.to(pix.dtype))

    (cx, wx), (cy, wy) = axis(xy[:, 0], w), axis(xy[:, 1], h)
    n = xy.shape[0]
    cells = (cy[:, :, None] * w + cx[:, None, :]).reshape(n, -1)
    return cells[:, 0], cells, (wy[:, :, None] * wx[:, None, :]).reshape(n, -1)


def sample_maps(maps: torch.Tensor, xy: torch.Tensor, align_corners: bool = False,
                padding: str = "border") -> torch.Tensor:
    """Bilinearly sample feature maps at per-vertex positions.

    Same values and gradients as ``F.grid_sample(..., mode="bilinear", padding_mode=padding)``,
    computed as one matrix product with :func:`bilinear_weights` (several times faster on CPU for
    the small token grids used here, and no scatter in the backward pass).

    Parameters
    ----------
    maps : tensor of shape (B, C, h, w)
    xy : tensor of shape (n, 2)
        Positions in [-1, 1]^2, x right and y down (grid_sample convention).
    align_corners : bool
        ``False``: -1 / +1 are the outer image edges (pixel j of w has its centre at
        ``(2j + 1) / w - 1``); ``True``: they are the centres of the corner pixels.
        Out-of-range points take the border value.
    padding : "border" (outside the grid reads the nearest edge cell) or "zeros" (reads 0).

    Returns
    -------
    tensor of shape (B, n, C)
    """
    h, w = maps.shape[-2:]
    weights = bilinear_weights(xy.to(maps.dtype), h, w, align_corners, padding)  # (n, h*w)
    return torch.einsum("bcp,np->bnc", maps.flatten(2), weights)


def _layer_mix(maps: torch.Tensor, xy: torch.Tensor, layer_weights: torch.Tensor, align_corners: bool,
               padding: str) -> torch.Tensor:
    """The per-vertex weights (n, L * h * w) of every layer's cells: the layer weights times the bilinear
    weights of each layer's grid (column ``l * h * w + cell``)."""
    _, ld, h, w = maps.shape
    n_layers = layer_weights.shape[1]
    if ld % n_layers:
        raise ValueError(f"{ld} channels do not split into {n_layers} layers")
    spatial = bilinear_weights(xy.to(maps.dtype), h, w, align_corners, padding)  # (n, P)
    return (layer_weights.to(maps.dtype)[:, :, None] * spatial[:, None, :]).reshape(xy.shape[0], n_layers * h * w)


def sample_mixed_maps(maps: torch.Tensor, xy: torch.Tensor, layer_weights: torch.Tensor,
                      align_corners: bool = False, padding: str = "border") -> torch.Tensor:
    """Sample L stacked layer maps at per-vertex positions and mix them with per-vertex layer
    weights, in one matrix product (no (B, n, L, D) intermediate).

    Parameters
    ----------
    maps : tensor of shape (B, L * D, h, w), layer-major channels
    xy : tensor of shape (n, 2); layer_weights : tensor of shape (n, L)
    align_corners, padding : as in :func:`sample_maps`

    Returns
    -------
    tensor of shape (B, n, D): ``sum_l layer_weights[n, l] * sample(maps_l, xy[n])``
    """
    mix = _layer_mix(maps, xy, layer_weights, align_corners, padding)
    b, ld, h, w = maps.shape
    n_layers = layer_weights.shape[1]
    per_layer = maps.reshape(b, n_layers, ld // n_layers, h * w).transpose(1, 2).reshape(b, ld // n_layers, -1)
    return torch.einsum("bdq,nq->bnd", per_layer, mix)


def _cell_table(maps: torch.Tensor, n_layers: int, glob: torch.Tensor | None) -> torch.Tensor:
    """The rows that vertex-major sampling mixes: maps (B, L * D, h, w) -> (L * h * w [+ L], B * D), row
    ``l * h * w + cell`` = layer l's cell, then (with glob (B, L, D)) row ``L * h * w + l`` = layer l's global."""
    b, ld, h, w = maps.shape
    if ld % n_layers:
        raise ValueError(f"{ld} channels do not split into {n_layers} layers")
    d = ld // n_layers
    table = maps.reshape(b, n_layers, d, h * w).permute(1, 3, 0, 2).reshape(n_layers * h * w, b * d)
    if glob is None:
        return table
    if glob.shape != (b, n_layers, d):
        raise ValueError(f"glob must be {(b, n_layers, d)}, got {tuple(glob.shape)}")
    return torch.cat([table, glob.permute(1, 0, 2).reshape(n_layers, b * d)])


def sample_mixed_maps_vertex_major(maps: torch.Tensor, xy: torch.Tensor, layer_weights: torch.Tensor,
                                   glob: torch.Tensor | None = None, align_corners: bool = False,
                                   padding: str = "border") -> torch.Tensor:
    """:func:`sample_mixed_maps` plus, optionally, the per-layer globals mixed by the same weights,
    laid out vertex-major: one (n, Q) x (Q, B * D) matrix product straight into the (n, B, D) result
    (the layout a per-vertex readout reads as one batched product; no permuted copy, no second product
    for the globals).

    Parameters
    ----------
    maps : tensor of shape (B, L * D, h, w); xy : (n, 2); layer_weights : (n, L)
    glob : tensor of shape (B, L, D), optional
    align_corners, padding : as in :func:`sample_maps`

    Returns
    -------
    tensor of shape (n, B, D): ``sum_l layer_weights[n, l] * (sample(maps_l, xy[n]) + glob[:, l])``
    """
    b, d = maps.shape[0], maps.shape[1] // layer_weights.shape[1]
    mix = _layer_mix(maps, xy, layer_weights, align_corners, padding)
    table = _cell_table(maps, layer_weights.shape[1], glob)
    if glob is not None:
        mix = torch.cat([mix, layer_weights.to(mix.dtype)], dim=1)
    return (mix @ table).view(xy.shape[0], b, d)


def vertex_groups_by_cells(xy: torch.Tensor, h: int, w: int, chunk_size: int | None, align_corners: bool = False,
                           padding: str = "border") -> tuple[torch.Tensor, list[int], torch.Tensor, torch.Tensor]:
    """Points grouped by the 2 x 2 block of cells they read (:func:`bilinear_taps`), groups cut to at most
    ``chunk_size`` points (None or <= 0: uncut). Reads the groups' sizes on the host: meant for CPU tensors.

    Returns
    -------
    order : long tensor (n,), the points' positions in xy, group after group
    sizes : the groups' lengths (in that order; they sum to n)
    cells : long tensor (G, k), each group's cells; weights : tensor (n, k), the points' weights, in ``order``
    """
    base, cells, weights = bilinear_taps(xy, h, w, align_corners, padding)
    order = torch.argsort(base, stable=True)
    step = chunk_size if chunk_size and chunk_size > 0 else max(1, xy.shape[0])
    sizes = []
    for count in torch.bincount(base).tolist():
        sizes += [step] * (count // step) + ([count % step] if count % step else [])
    first = torch.tensor([0, *sizes[:-1]], device=xy.device).cumsum(0)
    return order, sizes, cells[order[first]], weights[order]


def mixed_map_groups(maps: torch.Tensor, xy: torch.Tensor, layer_weights: torch.Tensor,
                     glob: torch.Tensor | None = None, chunk_size: int | None = None,
                     align_corners: bool = False, padding: str = "border"
                     ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """:func:`sample_mixed_maps_vertex_major` factored over groups of points that read the same cells
    (:func:`vertex_groups_by_cells`): a group's features are ``mix @ rows``, its points' (at most) 4 weights
    per layer (and one per global) times those few rows, instead of a product over every cell of every layer
    (~13 times fewer operations at 8 x 8 cells; a readout can contract ``rows`` first and never form the
    (m, B, D) features). Host reads of the group sizes: for CPU tensors.

    Returns
    -------
    order : long tensor (n,), the points' positions in xy, group after group
    rows : per group a tensor (K, B, D), K <= 5 L; mix : per group its points' weights (m, K), in ``order``
    """
    b, ld, h, w = maps.shape
    n_layers = layer_weights.shape[1]
    d, p = ld // n_layers, h * w
    table = _cell_table(maps, n_layers, glob).view(-1, b, d)
    order, sizes, cells, weights = vertex_groups_by_cells(xy.to(maps.dtype), h, w, chunk_size, align_corners,
                                                          padding)
    lw = layer_weights.to(maps.dtype)[order]
    layers = torch.arange(n_layers, device=maps.device)
    rows = (layers[None, :, None] * p + cells[:, None, :]).reshape(len(sizes), -1)  # (G, L * k)
    mix = (lw[:, :, None] * weights[:, None, :]).reshape(order.numel(), -1)
    if glob is not None:
        rows = torch.cat([rows, (n_layers * p + layers).expand(len(sizes), -1)], dim=1)
        mix = torch.cat([mix, lw], dim=1)
    return order, list(table[rows].unbind(0)), list(torch.split(mix, sizes))
