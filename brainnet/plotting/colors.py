"""Pure colour functions for surface maps (no drawing).

Every function maps per-vertex quantities to sRGB colours in [0, 1]:

* :func:`layer_colors`: hue = preferred layer (early = cold ... late = warm), brightness =
  certainty = 1 - normalised entropy of the layer weights (one-hot = full colour, uniform = black).
* :func:`space_colors`: a point (x, y) of [-1, 1]^2 -> a colour of a square cut through OKLab
  at constant lightness (all colours equally light, hue and chroma code the position).
* :func:`scale_colors`: local (0) ... global (1) on a purple-orange scale.
* :func:`channel_colors`: integer cluster ids on tab20.
* :func:`scalar_colors`: values through a matplotlib colormap, with NaN / threshold masks.
* :func:`background_colors`: greys from sulcal depth (deep = dark).
"""

from __future__ import annotations

import matplotlib
import numpy as np

# Constant-lightness colour square in OKLab: lightness, chroma per unit of x / y, rotation.
# Chosen so the whole square [-1, 1]^2 lies inside the sRGB gamut with the largest chroma.
SPACE_LIGHTNESS = 0.71
SPACE_CHROMA = 0.114
SPACE_ROTATION_DEG = 16.0

LAYER_CMAP = "coolwarm"
SCALE_CMAP = "PuOr_r"
CHANNEL_CMAP = "tab20"


def _cmap(cmap):
    return matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap


def normalised_entropy(weights) -> np.ndarray:
    """Entropy of each row of ``weights`` divided by log(L).

    Parameters
    ----------
    weights : array of shape (V, L), non-negative; rows are normalised to sum to 1.

    Returns
    -------
    array of shape (V,) in [0, 1]: 0 = one-hot, 1 = uniform.
    """
    w = _check_weights(weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(w > 0, w * np.log(w), 0.0).sum(axis=1)
    return np.clip(h / np.log(w.shape[1]), 0.0, 1.0)


def _check_weights(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] < 2:
        raise ValueError(f"layer weights must have shape (V, L) with L >= 2, got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("layer weights contain NaN or inf")
    if np.any(w < 0):
        raise ValueError("layer weights must be non-negative (softmax outputs)")
    total = w.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError("every vertex needs a positive total layer weight")
    return w / total


def layer_colors(weights, *, cmap=LAYER_CMAP, hue: str = "argmax", max_entropy: float = 1.0) -> np.ndarray:
    """Colour of each vertex's layer preference.

    Parameters
    ----------
    weights : array of shape (V, L), the layer selector's (softmax) weights; rows are
        normalised to sum to 1.
    cmap : colormap for the preferred layer, position 0 = first layer, 1 = last layer.
    hue : ``"argmax"`` (the most weighted layer) or ``"mean"`` (the weight-averaged layer
        position, continuous).
    max_entropy : normalised entropy shown black; certainty = clip(1 - H / max_entropy, 0, 1).
        Lower it to stretch the brightness when all entropies are high.

    Returns
    -------
    rgb : array of shape (V, 3) = cmap(layer position) * certainty.
    """
    if hue not in ("argmax", "mean"):
        raise ValueError(f"hue must be 'argmax' or 'mean', got {hue!r}")
    if not max_entropy > 0:
        raise ValueError(f"max_entropy must be > 0, got {max_entropy}")
    w = _check_weights(weights)
    n_layers = w.shape[1]
    if hue == "argmax":
        pos = np.argmax(w, axis=1) / (n_layers - 1)
    else:
        pos = w @ (np.arange(n_layers) / (n_layers - 1))
    certainty = np.clip(1.0 - normalised_entropy(w) / max_entropy, 0.0, 1.0)
    return _cmap(cmap)(pos)[:, :3] * certainty[:, None]


def layer_legend_image(n_layers: int, n_levels: int = 64, *, cmap=LAYER_CMAP, max_entropy: float = 1.0) -> np.ndarray:
    """The 2-D legend of :func:`layer_colors`: columns = preferred layer, rows = entropy.

    Returns
    -------
    rgb : array of shape (n_levels, n_layers, 3); row 0 = entropy 0 (full colour), last row =
        entropy ``max_entropy`` (black).
    """
    if n_layers < 2:
        raise ValueError(f"n_layers must be >= 2, got {n_layers}")
    certainty = 1.0 - np.linspace(0.0, 1.0, n_levels)
    base = _cmap(cmap)(np.arange(n_layers) / (n_layers - 1))[:, :3]
    return certainty[:, None, None] * base[None, :, :]


def _oklab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """OKLab (..., 3) -> gamma-encoded sRGB (..., 3), clipped to [0, 1]."""
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    l_ = L + 0.3963377774 * a + 0.2158037573 * b
    m_ = L - 0.1055613458 * a - 0.0638541728 * b
    s_ = L - 0.0894841775 * a - 1.2914855480 * b
    lc, m, s = l_**3, m_**3, s_**3
    lin = np.stack(
        [
            4.0767416621 * lc - 3.3077115913 * m + 0.2309699292 * s,
            -1.2684380046 * lc + 2.6097574011 * m - 0.3413193965 * s,
            -0.0041960863 * lc - 0.7034186147 * m + 1.7076127010 * s,
        ],
        axis=-1,
    )
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.power(lin, 1 / 2.4) - 0.055)


def srgb_to_oklab(rgb) -> np.ndarray:
    """Gamma-encoded sRGB (..., 3) in [0, 1] -> OKLab (..., 3)."""
    c = np.asarray(rgb, dtype=np.float64)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = lin[..., 0], lin[..., 1], lin[..., 2]
    lc = np.cbrt(0.4122214708 * r + 0.5363020953 * g + 0.0514459929 * b)
    m = np.cbrt(0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b)
    s = np.cbrt(0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b)
    return np.stack(
        [
            0.2104542553 * lc + 0.7936177850 * m - 0.0040720468 * s,
            1.9779984951 * lc - 2.4285922050 * m + 0.4505937099 * s,
            0.0259040371 * lc + 0.7827717662 * m - 0.8086757660 * s,
        ],
        axis=-1,
    )


def space_colors(xy) -> np.ndarray:
    """Colour of each vertex's sampling point on the 2-D colour square.

    Parameters
    ----------
    xy : array of shape (V, 2) in [-1, 1] (x = image column, left..right; y = image row as
        used by ``grid_sample``, top..bottom).

    Returns
    -------
    rgb : array of shape (V, 3); all colours have OKLab lightness ``SPACE_LIGHTNESS``.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy must have shape (V, 2), got {xy.shape}")
    if not np.all(np.isfinite(xy)):
        raise ValueError("xy contains NaN or inf")
    if np.any(np.abs(xy) > 1.0 + 1e-6):
        raise ValueError(f"xy must lie in [-1, 1]^2, found range [{xy.min():.3g}, {xy.max():.3g}]")
    x, y = np.clip(xy[:, 0], -1, 1), np.clip(xy[:, 1], -1, 1)
    phi = np.deg2rad(SPACE_ROTATION_DEG)
    a = SPACE_CHROMA * (x * np.cos(phi) - y * np.sin(phi))
    b = SPACE_CHROMA * (x * np.sin(phi) + y * np.cos(phi))
    lab = np.stack([np.full_like(x, SPACE_LIGHTNESS), a, b], axis=1)
    return _oklab_to_srgb(lab)


def space_legend_image(n: int = 128) -> np.ndarray:
    """The colour square of :func:`space_colors`.

    Returns
    -------
    rgb : array of shape (n, n, 3); pixel [i, j] is the colour of x = linspace(-1, 1)[j],
        y = linspace(-1, 1)[i] (row 0 = y -1 = top of the image, as ``imshow`` shows it).
    """
    t = np.linspace(-1.0, 1.0, n)
    xx, yy = np.meshgrid(t, t)
    return space_colors(np.stack([xx.ravel(), yy.ravel()], axis=1)).reshape(n, n, 3)


def scale_colors(scale, *, cmap=SCALE_CMAP, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Colour of each vertex's scale s (0 = local ... 1 = global).

    Parameters
    ----------
    scale : array of shape (V,).

    Returns
    -------
    rgb : array of shape (V, 3); s = vmin -> purple end, s = vmax -> orange end (``PuOr_r``).
    """
    s = np.asarray(scale, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scale must have shape (V,), got {s.shape}")
    if not vmax > vmin:
        raise ValueError(f"vmax must exceed vmin, got {vmin}, {vmax}")
    return _cmap(cmap)(np.clip((s - vmin) / (vmax - vmin), 0.0, 1.0))[:, :3]


def channel_colors(ids, *, cmap=CHANNEL_CMAP) -> np.ndarray:
    """Colour of each vertex's cluster id on a qualitative colormap (id modulo its size).

    Parameters
    ----------
    ids : integer array of shape (V,), ids >= 0.

    Returns
    -------
    rgb : array of shape (V, 3).
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"channel ids must be a 1-D integer array, got {ids.dtype} {ids.shape}")
    if np.any(ids < 0):
        raise ValueError("channel ids must be >= 0 (use mask= to hide vertices)")
    cm = _cmap(cmap)
    n = getattr(cm, "N", 20)
    return np.asarray(cm.colors if hasattr(cm, "colors") else cm(np.linspace(0, 1, n)))[ids % n, :3].astype(float)


def resolve_limits(values, vmin=None, vmax=None, symmetric: bool | None = None) -> tuple[float, float]:
    """Colour limits for scalar values: given ones, else [0 or -m, m] with m = max |value|.

    ``symmetric=None`` makes them symmetric when finite values of both signs occur.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if symmetric is None:
        symmetric = v.size > 0 and v.min() < 0 < v.max()
    m = float(np.abs(v).max()) if v.size else 1.0
    m = m if m > 0 else 1.0
    lo = (-m if symmetric else (min(0.0, float(v.min())) if v.size else 0.0)) if vmin is None else float(vmin)
    hi = m if vmax is None else float(vmax)
    if not hi > lo:
        raise ValueError(f"vmax must exceed vmin, got vmin={lo}, vmax={hi}")
    return lo, hi


def scalar_colors(values, *, cmap="inferno", vmin: float = 0.0, vmax: float = 1.0, threshold: float | None = None):
    """Colour scalar values and tell which ones to show.

    Parameters
    ----------
    values : array of shape (V,).
    threshold : values with |value| < threshold are not shown.

    Returns
    -------
    rgb : array of shape (V, 3)
    shown : bool array of shape (V,), False for NaN and thresholded values.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must have shape (V,), got {v.shape}")
    if not vmax > vmin:
        raise ValueError(f"vmax must exceed vmin, got vmin={vmin}, vmax={vmax}")
    shown = np.isfinite(v)
    if threshold is not None:
        shown &= np.abs(np.nan_to_num(v)) >= threshold
    t = np.clip((np.nan_to_num(v) - vmin) / (vmax - vmin), 0.0, 1.0)
    return _cmap(cmap)(t)[:, :3], shown


def background_colors(sulc, *, light: float = 0.78, dark: float = 0.45) -> np.ndarray:
    """Greys from sulcal depth: gyri (sulc < 0) light, sulci (sulc > 0) dark.

    Parameters
    ----------
    sulc : array of shape (n,).

    Returns
    -------
    rgb : array of shape (n, 3).
    """
    s = np.asarray(sulc, dtype=np.float64)
    scale = np.nanpercentile(np.abs(s), 75) if s.size and np.any(s != 0) else 1.0
    t = 0.5 + 0.5 * np.tanh(np.nan_to_num(s) / (scale if scale > 0 else 1.0))
    g = light + (dark - light) * t
    return np.repeat(g[:, None], 3, axis=1)
