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
    if padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")

    def axis(t: torch.Tensor, size: int) -> torch.Tensor:
        pix = (t + 1) / 2 * (size - 1) if align_corners else ((t + 1) * size - 1) / 2
        if padding == "border":
            pix = pix.clamp(0, size - 1)
        centres = torch.arange(size, device=t.device, dtype=t.dtype)
        return (1 - (pix[:, None] - centres[None]).abs()).clamp_min(0)  # (n, size)

    wx, wy = axis(xy[:, 0], w), axis(xy[:, 1], h)
    return (wy[:, :, None] * wx[:, None, :]).reshape(xy.shape[0], h * w)


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
    b, ld, h, w = maps.shape
    n_layers = layer_weights.shape[1]
    if ld % n_layers:
        raise ValueError(f"{ld} channels do not split into {n_layers} layers")
    d = ld // n_layers
    spatial = bilinear_weights(xy.to(maps.dtype), h, w, align_corners, padding)  # (n, P)
    mix = (layer_weights.to(maps.dtype)[:, :, None] * spatial[:, None, :]).reshape(xy.shape[0], n_layers * h * w)
    per_layer = maps.reshape(b, n_layers, d, h * w).transpose(1, 2).reshape(b, d, n_layers * h * w)
    return torch.einsum("bdq,nq->bnd", per_layer, mix)
