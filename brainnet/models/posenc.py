"""Sinusoidal encoding of cortical vertex positions on the fsaverage sphere.

The two hemispheres share one sphere (centred at the origin, radius ~100 mm on fsaverage).
To give every vertex a distinct position, the right hemisphere is moved along +x by
``2 * radius * (1 + gap)`` so the two spheres sit side by side. All axes are then shifted to
start at 0 and multiplied by one common factor so that the longest axis (x) spans ``span``
steps (100 by default). The shift and scale depend only on the sphere radius, so every subject
gets the same mapping whatever its vertex subset.

Subject-space voxels (hemi :data:`~brainnet.data.layout.HEMI_VOLUME`, coordinates = scanner mm) form
a third block: centred on their own centroid and moved along +x by ``2 * shift`` (one more slot beyond
the right hemisphere), then shifted and scaled exactly like the vertices. The scale is still the one
of the two spheres (voxels may reach past ``span``), so the encodings of the vertices are the same
whether a dataset has voxels or not. Why the scanner position: it keeps physical distances between
voxels (1 mm on the grid = 1 mm on the sphere's scale, close voxels get close codes), it works with
every selector that consumes a position, and it adds no per-unit parameters (a learned embedding
would grow with the voxel count and be untrained for held-out subjects).

Each normalised coordinate is encoded by ``sin(f * p)`` and ``cos(f * p)`` for ``n_freqs``
log-spaced angular frequencies whose periods run from ``min_period`` to ``max_period`` steps,
giving ``3 * 2 * n_freqs`` features (192 for 32 frequencies).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from brainnet.data.layout import HEMI_VOLUME

#: Radius used when a subject has no surface vertices (the fsaverage sphere's, mm).
DEFAULT_SPHERE_RADIUS = 100.0


def _as_float_tensor(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if not torch.is_floating_point(t):
        t = t.to(torch.float32)
    return t.to(torch.float32)


def sphere_radius(coords) -> float:
    """Largest vertex distance from the origin.

    Parameters
    ----------
    coords : array of shape (V, 3)
    """
    c = _as_float_tensor(coords, "coords")
    if c.ndim != 2 or c.shape[1] != 3 or c.shape[0] == 0:
        raise ValueError(f"coords must have shape (V, 3) with V > 0, got {tuple(c.shape)}")
    r = float(c.norm(dim=1).max())
    if not math.isfinite(r) or r <= 0:
        raise ValueError(f"coords must be finite and not all zero (max norm {r})")
    return r


def surface_radius(coords, hemi) -> float:
    """:func:`sphere_radius` of the vertices (hemi 0 / 1) of ``coords`` (V, 3); voxels are left out and
    :data:`DEFAULT_SPHERE_RADIUS` is returned when there is no vertex."""
    c, h = _as_float_tensor(coords, "coords"), torch.as_tensor(hemi)
    surface = h != HEMI_VOLUME
    return sphere_radius(c[surface]) if bool(surface.any()) else DEFAULT_SPHERE_RADIUS


def normalize_sphere_coords(coords, hemi, radius: float | None = None, span: float = 100.0,
                            gap: float = 0.1) -> torch.Tensor:
    """Place both hemispheres side by side and rescale to ``span`` steps.

    Parameters
    ----------
    coords : array of shape (V, 3)
        fsaverage sphere coordinates of the selected vertices.
    hemi : array of shape (V,)
        0 for left, 1 for right hemisphere, 2 (``HEMI_VOLUME``) for a voxel (coords in scanner mm).
    radius : float, optional
        Sphere radius; defaults to :func:`sphere_radius` of the vertices' coordinates
        (:data:`DEFAULT_SPHERE_RADIUS` without vertices). Pass the same value for every subject to
        get identical mappings.
    span : float
        Number of steps covered by the longest axis after rescaling.
    gap : float
        Space left between the two hemispheres, as a fraction of the diameter.

    Returns
    -------
    tensor of shape (V, 3), float32; vertices have each axis in ``[0, span]`` (x is the longest
    axis); voxels lie beyond ``span`` along x.
    """
    c = _as_float_tensor(coords, "coords")
    h = torch.as_tensor(hemi)
    if c.ndim != 2 or c.shape[1] != 3:
        raise ValueError(f"coords must have shape (V, 3), got {tuple(c.shape)}")
    if h.shape != (c.shape[0],):
        raise ValueError(f"hemi must have shape ({c.shape[0]},), got {tuple(h.shape)}")
    if not bool(((h == 0) | (h == 1) | (h == HEMI_VOLUME)).all()):
        raise ValueError(f"hemi must contain only 0 (left), 1 (right) and {HEMI_VOLUME} (voxel)")
    if not bool(torch.isfinite(c).all()):
        raise ValueError("coords contain NaN or inf")
    voxel = h == HEMI_VOLUME
    r = surface_radius(c, h) if radius is None else float(radius)
    if r <= 0:
        raise ValueError(f"radius must be positive, got {r}")
    shift = 2.0 * r * (1.0 + gap)
    out = c.clone()
    if bool(voxel.any()):
        out[voxel] = out[voxel] - out[voxel].mean(dim=0)
    out[:, 0] = out[:, 0] + shift * h.to(torch.float32)
    lower = torch.tensor([-r, -r, -r])
    longest = shift + 2.0 * r  # x extent: [-r, shift + r]
    return (out - lower) * (span / longest)


def sinusoidal_encoding(positions: torch.Tensor, n_freqs: int = 32, min_period: float = 2.0,
                        max_period: float = 200.0) -> torch.Tensor:
    """Sin / cos features of positions.

    Parameters
    ----------
    positions : tensor of shape (V, A)
        Positions in steps (e.g. the output of :func:`normalize_sphere_coords`).
    n_freqs : int
        Number of log-spaced frequencies per axis.
    min_period, max_period : float
        Shortest and longest period, in steps.

    Returns
    -------
    tensor of shape (V, A * 2 * n_freqs): for each axis, ``n_freqs`` sines then ``n_freqs``
    cosines.
    """
    if positions.ndim != 2:
        raise ValueError(f"positions must have shape (V, A), got {tuple(positions.shape)}")
    if n_freqs < 1 or not 0 < min_period <= max_period:
        raise ValueError("need n_freqs >= 1 and 0 < min_period <= max_period")
    periods = torch.logspace(math.log10(min_period), math.log10(max_period), n_freqs,
                             dtype=torch.float64)
    freqs = (2 * math.pi / periods).to(positions.dtype).to(positions.device)
    angles = positions[:, :, None] * freqs  # (V, A, F)
    feats = torch.cat([angles.sin(), angles.cos()], dim=2)  # (V, A, 2F)
    return feats.reshape(positions.shape[0], -1)


class SphereEncoder(nn.Module):
    """Callable that maps raw sphere coordinates to sinusoidal features.

    Parameters
    ----------
    n_freqs, min_period, max_period, span, gap : see :func:`sinusoidal_encoding` and
        :func:`normalize_sphere_coords`.
    radius : float, optional
        Fixed sphere radius (None: taken from the coordinates at each call).
    """

    def __init__(self, n_freqs: int = 32, span: float = 100.0, min_period: float = 2.0,
                 max_period: float = 200.0, gap: float = 0.1, radius: float | None = None):
        super().__init__()
        self.n_freqs = n_freqs
        self.span = span
        self.min_period = min_period
        self.max_period = max_period
        self.gap = gap
        self.radius = radius

    @property
    def out_dim(self) -> int:
        """Number of features per vertex (``3 * 2 * n_freqs``)."""
        return 6 * self.n_freqs

    def forward(self, coords, hemi) -> torch.Tensor:
        """coords (V, 3), hemi (V,) -> features (V, 6 * n_freqs), float32."""
        pos = normalize_sphere_coords(coords, hemi, radius=self.radius, span=self.span,
                                      gap=self.gap)
        return sinusoidal_encoding(pos, self.n_freqs, self.min_period, self.max_period)


class VertexEncodings(nn.Module):
    """Per-subject sinusoidal vertex encodings, kept as (non-persistent) buffers.

    Parameters
    ----------
    coords : mapping subject -> array of shape (V_s, 3)
        fsaverage sphere coordinates of each subject's selected vertices.
    hemi : mapping subject -> array of shape (V_s,)
        0 left / 1 right hemisphere / 2 voxel (coords in scanner mm, see the module docstring).
    encoder : SphereEncoder
        When its ``radius`` is None, one radius (the largest over all subjects) is used for
        every subject so that equal coordinates get equal encodings.
    """

    def __init__(self, coords, hemi, encoder: SphereEncoder):
        super().__init__()
        if not coords:
            raise ValueError("need coordinates for at least one subject")
        if set(coords) != set(hemi):
            raise ValueError(f"coords and hemi name different subjects: {sorted(coords)} vs {sorted(hemi)}")
        radius = encoder.radius
        if radius is None:
            radius = max(surface_radius(coords[s], hemi[s]) for s in coords)
        self.radius = float(radius)
        self.out_dim = encoder.out_dim
        self._keys: dict[str, str] = {}
        for subject in coords:
            if not isinstance(subject, str) or not subject or "." in subject:
                raise ValueError(f"subject keys must be non-empty strings without '.', got {subject!r}")
            pos = normalize_sphere_coords(coords[subject], hemi[subject], radius=self.radius,
                                          span=encoder.span, gap=encoder.gap)
            pe = sinusoidal_encoding(pos, encoder.n_freqs, encoder.min_period, encoder.max_period)
            name = f"pe_{len(self._keys)}"
            self.register_buffer(name, pe, persistent=False)
            self._keys[subject] = name

    @property
    def subjects(self) -> list[str]:
        return list(self._keys)

    def n_vertices(self, subject: str) -> int:
        """Number of vertices of ``subject``."""
        return self.get(subject).shape[0]

    def get(self, subject: str) -> torch.Tensor:
        """Encoding of all of a subject's vertices: (V_s, out_dim)."""
        if subject not in self._keys:
            raise KeyError(f"unknown subject {subject!r}; known: {self.subjects}")
        return getattr(self, self._keys[subject])
