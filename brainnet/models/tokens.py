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


def resize_map(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize a feature map (B, C, h, w) to (B, C, size, size); None or same size = unchanged.

    Shrinking uses area averaging (adaptive average pooling), growing bilinear interpolation.
    """
    if size is None or (x.shape[-2] == size and x.shape[-1] == size):
        return x
    if x.shape[-2] >= size and x.shape[-1] >= size:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def sample_maps(maps: torch.Tensor, xy: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    """Bilinearly sample feature maps at per-vertex positions.

    Parameters
    ----------
    maps : tensor of shape (B, C, h, w)
    xy : tensor of shape (n, 2)
        Positions in [-1, 1]^2, x right and y down (grid_sample convention).
    align_corners : bool
        ``False``: -1 / +1 are the outer image edges (pixel j of w has its centre at
        ``(2j + 1) / w - 1``); ``True``: they are the centres of the corner pixels.
        Out-of-range points take the border value.

    Returns
    -------
    tensor of shape (B, n, C)
    """
    b = maps.shape[0]
    grid = xy.to(maps.dtype)[None, None].expand(b, 1, -1, 2)
    out = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border",
                        align_corners=align_corners)  # (B, C, 1, n)
    return out[:, :, 0].transpose(1, 2)
