"""Synthetic scenes with objects of four visual categories and their ground-truth maps.

A scene is a textured background with 1..n objects drawn on top, each of one category:

* ``faces``  - a round/oval blob with two dark eyes and a mouth,
* ``bodies`` - a stick figure: small head, torso and four limb sticks,
* ``places`` - a house: walls, triangular roof, windows and a door,
* ``words``  - a light box holding rows of dark glyph strokes.

Colours, sizes, contrasts and the background texture vary, so low-level edge energy and
category content are related but not identical. Everything is deterministic for a given
``np.random.Generator`` state.

Coordinates follow torch ``grid_sample`` (``align_corners=False``): ``x`` in [-1, 1] from the
left edge of the image to the right edge, ``y`` in [-1, 1] from the top edge DOWN to the bottom.
Each object lies inside the disc of radius ``size`` around ``(cx, cy)``; :func:`category_maps`
uses these discs (later objects occlude earlier ones) as the category support.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES: tuple[str, ...] = ("faces", "bodies", "places", "words")

#: Range of object radii (normalised units, image half-width = 1).
SIZE_RANGE: tuple[float, float] = (0.18, 0.5)


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene.

    Attributes:
        category: index into :data:`CATEGORIES`.
        cx, cy: centre in [-1, 1]; x to the right, y down (``grid_sample`` convention).
        size: radius of the disc holding the object, in the same normalised units.
    """

    category: int
    cx: float
    cy: float
    size: float


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"image size must be an integer >= 8, got {size!r}")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Textured background: a few random oriented gratings plus smooth noise.

    Returns float array of shape (size, size, 3) in [0, 1].
    """
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    base = rng.uniform(0.2, 0.8, size=3)
    tint = rng.uniform(-0.15, 0.15, size=3)
    contrast = rng.uniform(0.02, 0.25)  # texture contrast varies a lot between scenes
    tex = np.zeros((size, size))
    for _ in range(int(rng.integers(1, 4))):
        freq = rng.uniform(1.0, 10.0)
        theta = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        tex += np.sin(np.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)
    # smooth noise: a coarse random field upsampled bilinearly
    coarse = rng.standard_normal((8, 8)).astype(np.float32)
    noise = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BILINEAR))
    tex = tex / max(np.abs(tex).max(), 1e-6) + 0.5 * noise
    gradient = rng.uniform(-0.2, 0.2) * yy  # e.g. sky/ground luminance gradient
    img = base[None, None, :] + (contrast * tex + gradient)[:, :, None] * (1 + tint[None, None, :])
    return np.clip(img, 0.0, 1.0)


def _rgb(c: np.ndarray) -> tuple[int, int, int]:
    c = np.clip(np.asarray(c) * 255.0, 0, 255)
    return int(c[0]), int(c[1]), int(c[2])


def _draw_face(d: ImageDraw.ImageDraw, rng, px, py, r) -> None:
    skin = np.array([rng.uniform(0.45, 1.0), rng.uniform(0.3, 0.8), rng.uniform(0.2, 0.65)])
    rx, ry = r * rng.uniform(0.72, 0.88), r * rng.uniform(0.9, 0.98)
    d.ellipse([px - rx, py - ry, px + rx, py + ry], fill=_rgb(skin))
    eye = _rgb(skin * rng.uniform(0.0, 0.25))
    er = max(1.0, r * rng.uniform(0.1, 0.16))
    ex, ey = rx * 0.42, ry * 0.22
    for sx in (-1, 1):
        d.ellipse([px + sx * ex - er, py - ey - er, px + sx * ex + er, py - ey + er], fill=eye)
    mw = rx * rng.uniform(0.3, 0.5)
    d.line([px - mw, py + ry * 0.45, px + mw, py + ry * 0.45], fill=eye, width=max(1, int(r * 0.08)))


def _draw_body(d: ImageDraw.ImageDraw, rng, px, py, r) -> None:
    col = _rgb(rng.uniform(0.0, 1.0, size=3) * rng.uniform(0.3, 1.0))
    w = max(1, int(round(r * rng.uniform(0.1, 0.18))))
    hr = r * 0.17
    hy = py - r * 0.78
    d.ellipse([px - hr, hy - hr, px + hr, hy + hr], fill=col)
    top, hip = py - r * 0.58, py + r * 0.15
    tw = r * rng.uniform(0.12, 0.22)
    d.rectangle([px - tw, top, px + tw, hip], fill=col)
    arm = rng.uniform(-0.4, 0.6, size=2)  # arm angles (raised or lowered)
    for sx, a in zip((-1, 1), arm):
        d.line([px, top + r * 0.08, px + sx * r * 0.65, top + r * 0.08 - a * r * 0.5], fill=col, width=w)
    stride = rng.uniform(0.2, 0.45)
    for sx in (-1, 1):
        d.line([px + sx * tw * 0.5, hip, px + sx * r * stride, py + r * 0.85], fill=col, width=w)


def _draw_place(d: ImageDraw.ImageDraw, rng, px, py, r) -> None:
    wall = rng.uniform(0.2, 1.0, size=3)
    roof = rng.uniform(0.0, 0.8, size=3)
    hw = r * rng.uniform(0.55, 0.68)
    top, bottom = py - r * 0.1, py + r * 0.68
    d.rectangle([px - hw, top, px + hw, bottom], fill=_rgb(wall), outline=_rgb(wall * 0.4))
    d.polygon([(px - hw * 1.1, top), (px + hw * 1.1, top), (px, py - r * 0.72)], fill=_rgb(roof))
    win = _rgb(np.clip(1.2 - wall, 0, 1) * rng.uniform(0.3, 0.9))
    ww = hw * 0.22
    for sx in (-1, 1):
        cx = px + sx * hw * 0.5
        d.rectangle([cx - ww, top + r * 0.1, cx + ww, top + r * 0.1 + ww * 1.6], fill=win)
    d.rectangle([px - ww * 0.8, bottom - r * 0.38, px + ww * 0.8, bottom], fill=_rgb(wall * 0.35))


def _draw_word(d: ImageDraw.ImageDraw, rng, px, py, r) -> None:
    paper = rng.uniform(0.75, 1.0, size=3)
    ink = _rgb(rng.uniform(0.0, 0.3, size=3))
    hw, hh = r * 0.84, r * rng.uniform(0.35, 0.5)
    d.rectangle([px - hw, py - hh, px + hw, py + hh], fill=_rgb(paper))
    n_rows = int(rng.integers(2, 4))
    row_h = 2 * hh / (n_rows + 1)
    gw = max(1.5, r * rng.uniform(0.09, 0.14))
    w = max(1, int(round(gw * 0.35)))
    for k in range(n_rows):
        y0 = py - hh + row_h * (k + 0.55)
        x = px - hw + gw * 0.6
        while x < px + hw - gw * 1.2:
            kind = int(rng.integers(0, 4))
            if kind == 0:  # vertical stroke
                d.line([x, y0, x, y0 + row_h * 0.6], fill=ink, width=w)
            elif kind == 1:  # bar with a foot (like 'L')
                d.line([x, y0, x, y0 + row_h * 0.6, x + gw * 0.7, y0 + row_h * 0.6], fill=ink, width=w)
            elif kind == 2:  # small loop (like 'o')
                d.ellipse([x, y0 + row_h * 0.2, x + gw * 0.7, y0 + row_h * 0.6], outline=ink, width=w)
            else:  # cross (like 't')
                d.line([x + gw * 0.35, y0, x + gw * 0.35, y0 + row_h * 0.6], fill=ink, width=w)
                d.line([x, y0 + row_h * 0.2, x + gw * 0.7, y0 + row_h * 0.2], fill=ink, width=w)
            x += gw * (1.0 if rng.random() > 0.18 else 1.8)  # occasional word gap


_DRAWERS = (_draw_face, _draw_body, _draw_place, _draw_word)


def draw_scene(
    rng: np.random.Generator, size: int, n_objects: tuple[int, int] = (1, 4)
) -> tuple[np.ndarray, list[SceneObject]]:
    """Draw one random scene.

    Args:
        rng: the random generator (its state advances; same state -> same scene).
        size: image side in pixels (>= 8).
        n_objects: inclusive range (min, max) of the number of objects.

    Returns:
        image: uint8 array of shape (size, size, 3).
        objects: the drawn objects in drawing order (later ones occlude earlier ones).
    """
    _check_size(size)
    lo, hi = int(n_objects[0]), int(n_objects[1])
    if lo < 0 or hi < lo:
        raise ValueError(f"n_objects must be (min, max) with 0 <= min <= max, got {n_objects!r}")
    # draw at 2x and downsample: anti-aliased shapes that survive small image sizes
    ss = 2
    big = size * ss
    bg = _background(rng, size)  # smooth: drawn at the output size, upsampled for the objects
    canvas = Image.fromarray((bg * 255.0 + 0.5).astype(np.uint8), mode="RGB")
    canvas = canvas.resize((big, big), resample=Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    objects: list[SceneObject] = []
    n = int(rng.integers(lo, hi + 1))
    for _ in range(n):
        cat = int(rng.integers(0, len(CATEGORIES)))
        r = float(rng.uniform(*SIZE_RANGE))
        cx = float(rng.uniform(-1.0 + 0.5 * r, 1.0 - 0.5 * r))
        cy = float(rng.uniform(-1.0 + 0.5 * r, 1.0 - 0.5 * r))
        px, py, pr = (cx + 1.0) * big / 2.0, (cy + 1.0) * big / 2.0, r * big / 2.0
        _DRAWERS[cat](draw, rng, px, py, pr)
        objects.append(SceneObject(category=cat, cx=cx, cy=cy, size=r))
    image = canvas.resize((size, size), resample=Image.Resampling.BOX)
    return np.asarray(image, dtype=np.uint8).copy(), objects


def _cell_samples(grid: int, sub: int) -> tuple[np.ndarray, int]:
    """Normalised sub-sample coordinates, shape (grid * sub,), and their count per side."""
    n = grid * sub
    return (np.arange(n) + 0.5) / n * 2.0 - 1.0, n


def category_maps(objects, grid: int, subsample: int = 8) -> np.ndarray:
    """Coverage of each category per grid cell.

    Each object covers the disc of radius ``size`` around its centre; a point belongs to the
    last-drawn object covering it (occlusion), so the four maps sum to at most 1 per cell.

    Args:
        objects: sequence of :class:`SceneObject` in drawing order.
        grid: number of cells per side.
        subsample: sub-samples per cell side used to estimate the covered fraction.

    Returns:
        float32 array of shape (4, grid, grid); entry [c, i, j] is the fraction of cell
        (row i from the top, column j from the left) covered by category c.
    """
    if not isinstance(grid, (int, np.integer)) or grid < 1:
        raise ValueError(f"grid must be a positive integer, got {grid!r}")
    coords, n = _cell_samples(int(grid), int(subsample))
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    owner = np.full((n, n), -1, dtype=np.int64)
    for obj in objects:
        if not 0 <= int(obj.category) < len(CATEGORIES):
            raise ValueError(f"object category must be in [0, {len(CATEGORIES)}), got {obj.category}")
        inside = (xx - obj.cx) ** 2 + (yy - obj.cy) ** 2 <= obj.size**2
        owner[inside] = int(obj.category)
    out = np.empty((len(CATEGORIES), grid, grid), dtype=np.float32)
    for c in range(len(CATEGORIES)):
        m = (owner == c).astype(np.float32)
        out[c] = m.reshape(grid, subsample, grid, subsample).mean(axis=(1, 3))
    return out


def energy_map(image: np.ndarray, grid: int) -> np.ndarray:
    """Local contrast (edge) energy per grid cell.

    Luminance in [0, 1], gradient magnitude by central differences, averaged over the pixels of
    each cell (pixel ``i`` belongs to cell ``floor(i * grid / size)``).

    Args:
        image: uint8 or float array of shape (H, W, 3) or (H, W); uint8 is scaled by 1/255.
        grid: number of cells per side (<= min(H, W)).

    Returns:
        float32 array of shape (grid, grid), rows from the top.
    """
    img = np.asarray(image)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"image must have shape (H, W, 3) or (H, W), got {img.shape}")
    if not isinstance(grid, (int, np.integer)) or grid < 1 or grid > min(img.shape[:2]):
        raise ValueError(f"grid must be an integer in [1, {min(img.shape[:2])}], got {grid!r}")
    f = img.astype(np.float64)
    if img.dtype == np.uint8:
        f = f / 255.0
    lum = f @ np.array([0.299, 0.587, 0.114]) if f.ndim == 3 else f
    gy, gx = np.gradient(lum)
    mag = np.sqrt(gx**2 + gy**2)
    h, w = mag.shape
    ri = np.arange(h) * grid // h
    ci = np.arange(w) * grid // w
    sums = np.zeros((grid, grid))
    np.add.at(sums, (ri[:, None], ci[None, :]), mag)
    counts = np.bincount(ri, minlength=grid)[:, None] * np.bincount(ci, minlength=grid)[None, :]
    return (sums / counts).astype(np.float32)
