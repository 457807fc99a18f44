"""Per-unit maps of the explorer and how each is quantised for the page.

A unit is one entry of a prepared subject's vertices (a surface vertex, or a voxel with hemi 2).
Map kinds (each a frozen dataclass; :func:`as_map` turns plain arrays into one):

* :class:`Scalar`: values [V] through a matplotlib colormap (score, noise ceiling, lag peak, scale).
* :class:`Categorical`: integer codes [V] with names (ROIs, channel clusters); code 0 with names
  given = none (as ``PreparedSubject.roi_labels``).
* :class:`Layers`: layer weights [V, L]; coloured by :func:`brainnet.plotting.layer_colors`, legend
  :func:`~brainnet.plotting.layer_legend_image`; the weights feed the click panel's bars.
* :class:`Space`: (x, y) [V, 2] in [-1, 1]; coloured by :func:`~brainnet.plotting.space_colors`.

A NaN value (a NaN row of layer weights or positions) means the unit has none: no colour, NaN shown.

Quantisation (:func:`quantise`): values become uint8 / uint16 codes ``round((v - lo) / step)``,
the largest code meaning NaN; the page shows ``lo + code * step``, so a shown value is within
``step / 2`` of the one given.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib
import numpy as np

from brainnet.plotting import colors as C

#: bits of the codes of scalar values, (x, y) positions and the click panel's curves
VALUE_BITS = 16
#: bits of layer weights (bars in the click panel) and of scatter points
WEIGHT_BITS = 8


@dataclass(frozen=True, eq=False)
class Scalar:
    """values [V] float; NaN (and |v| < threshold) show the background."""

    values: np.ndarray
    cmap: str = "inferno"
    vmin: float | None = None
    vmax: float | None = None
    threshold: float | None = None
    label: str = ""


@dataclass(frozen=True, eq=False)
class Categorical:
    """codes [V] int >= 0; ``names[code]`` (code 0 = none when names are given)."""

    codes: np.ndarray
    names: tuple[str, ...] | None = None
    cmap: str = C.CHANNEL_CMAP
    label: str = ""


@dataclass(frozen=True, eq=False)
class Layers:
    """weights [V, L] (non-negative, rows normalised); ``names`` [L] the layers' names."""

    weights: np.ndarray
    names: tuple[str, ...] | None = None
    label: str = ""


@dataclass(frozen=True, eq=False)
class Space:
    """xy [V, 2] in [-1, 1] (x = image column, y = image row, top = -1)."""

    xy: np.ndarray
    label: str = ""


def scale_map(values, label: str = "") -> Scalar:
    """The scale map (0 local .. 1 global) as the static figures colour it."""
    return Scalar(np.asarray(values, dtype=np.float64), cmap=C.SCALE_CMAP, vmin=0.0, vmax=1.0, label=label)


def as_map(value):
    """A map spec from a spec or a plain array: float [V] -> Scalar, int [V] -> Categorical,
    [V, 2] -> Space, [V, L >= 3] -> Layers."""
    if isinstance(value, (Scalar, Categorical, Layers, Space)):
        return value
    a = np.asarray(value)
    if a.ndim == 1:
        return Categorical(a) if np.issubdtype(a.dtype, np.integer) else Scalar(a.astype(np.float64))
    if a.ndim == 2 and a.shape[1] == 2:
        return Space(a)
    if a.ndim == 2 and a.shape[1] >= 3:
        return Layers(a)
    raise ValueError(f"cannot tell the kind of a map of shape {a.shape}: pass Scalar, Categorical, Layers or Space")


def n_units(spec) -> int:
    """V, the number of units a map covers."""
    return int(np.asarray(getattr(spec, {Scalar: "values", Categorical: "codes", Layers: "weights",
                                         Space: "xy"}[type(spec)])).shape[0])


def quantise(values, bits: int = VALUE_BITS, lo: float | None = None, hi: float | None = None):
    """Codes of ``values`` (any shape): (codes uint8 / uint16, lo, step); NaN -> 2**bits - 1.

    ``lo`` / ``hi`` default to the finite minimum / maximum; values outside are clipped.
    """
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    if lo is None:
        lo = float(v[finite].min()) if finite.any() else 0.0
    if hi is None:
        hi = float(v[finite].max()) if finite.any() else lo
    top = 2**bits - 2
    step = (hi - lo) / top if hi > lo else 1.0
    codes = np.full(v.shape, top + 1, dtype=np.uint8 if bits == 8 else np.uint16)
    codes[finite] = np.clip(np.rint((v[finite] - lo) / step), 0, top)
    return codes, float(lo), float(step)


def dequantise(codes, lo: float, step: float) -> np.ndarray:
    """float64 values of :func:`quantise` codes; the NaN code gives NaN."""
    c = np.asarray(codes)
    out = lo + c.astype(np.float64) * step
    out[c == np.iinfo(c.dtype).max] = np.nan
    return out


def lut(cmap, n: int = 256) -> list[list[int]]:
    """A colormap as n RGB triples 0..255."""
    cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    return np.rint(cm(np.linspace(0, 1, n))[:, :3] * 255).astype(int).tolist()


def _rgb8(rgb) -> np.ndarray:
    return np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def encode_map(name: str, spec) -> tuple[dict, dict[str, np.ndarray]]:
    """Meta (JSON) and buffers {key: array} of one map.

    Every map has ``values`` codes [V, C] (``columns`` names its C columns, ``lo`` / ``step`` per
    column). Scalar / categorical maps are coloured in the page through ``lut`` / ``colors``; layer and
    space maps carry their colours as ``rgb`` [V, 3] uint8 (computed here by brainnet.plotting.colors).
    """
    kind = type(spec).__name__.lower()
    meta: dict = {"name": name, "kind": kind, "label": spec.label or name}  # the legend names what colours mean
    bufs: dict[str, np.ndarray] = {}
    if isinstance(spec, Scalar):
        v = np.asarray(spec.values, dtype=np.float64)
        if v.ndim != 1:
            raise ValueError(f"map {name!r}: scalar values must have shape (V,), got {v.shape}")
        vmin, vmax = C.resolve_limits(v, spec.vmin, spec.vmax)
        codes, lo, step = quantise(v)
        meta.update(columns=[meta["label"]], lo=[lo], step=[step], vmin=vmin, vmax=vmax, lut=lut(spec.cmap),
                    threshold=spec.threshold)
        bufs["values"] = codes[:, None]
    elif isinstance(spec, Categorical):
        ids = np.asarray(spec.codes)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or (ids.size and ids.min() < 0):
            raise ValueError(f"map {name!r}: categorical codes must be 1-D integers >= 0")
        present = np.unique(ids)
        names = list(spec.names) if spec.names is not None else [str(i) for i in range(int(ids.max(initial=0)) + 1)]
        if present.size and present.max() >= len(names):
            raise ValueError(f"map {name!r}: code {present.max()} has no name ({len(names)} names)")
        colors = _rgb8(C.channel_colors(np.arange(len(names)), cmap=spec.cmap)).tolist()
        meta.update(columns=[meta["label"]], lo=[0.0], step=[1.0], names=names, colors=colors,
                    none=0 if spec.names is not None else None,
                    present=[int(i) for i in present if spec.names is None or i != 0])
        bufs["values"] = ids.astype(np.uint16)[:, None]
    elif isinstance(spec, Layers):
        w = np.asarray(spec.weights, dtype=np.float64)
        n_layers = w.shape[1] if w.ndim == 2 else 0
        names = list(spec.names) if spec.names is not None else [str(i) for i in range(n_layers)]
        ok = np.isfinite(w).all(axis=1) if w.ndim == 2 else np.ones(len(w), dtype=bool)  # NaN rows: no value
        rgb = np.zeros((len(w), 3))
        rgb[ok] = C.layer_colors(w[ok])  # validates the shape and the weights
        w = w / np.where(ok, w.sum(axis=1), 1.0)[:, None]
        codes, lo, step = quantise(w, WEIGHT_BITS, 0.0, 1.0)
        meta.update(columns=[f"w[{n}]" for n in names], lo=[lo] * n_layers, step=[step] * n_layers,
                    layer_names=names, legend=C.layer_legend_image(n_layers, 64))
        bufs["values"], bufs["rgb"] = codes, _rgb8(rgb)
    elif isinstance(spec, Space):
        xy = np.asarray(spec.xy, dtype=np.float64)
        ok = np.isfinite(xy).all(axis=1) if xy.ndim == 2 else np.ones(len(xy), dtype=bool)  # NaN rows: no value
        rgb = np.zeros((len(xy), 3))
        rgb[ok] = C.space_colors(xy[ok])  # validates shape and range
        codes, lo, step = quantise(xy, VALUE_BITS, -1.0, 1.0)
        meta.update(columns=["x", "y"], lo=[lo, lo], step=[step, step], legend=C.space_legend_image(64))
        bufs["values"], bufs["rgb"] = codes, _rgb8(rgb)
    else:
        raise TypeError(f"map {name!r}: unknown map type {type(spec).__name__}")
    return meta, bufs
