"""The planted cortex of nsd-mini: mask, retinotopy, hierarchy, ROIs and vertex kinds.

Geometry (per hemisphere, on the sphere): ``P`` is a point near the occipital pole. Each vertex
gets its angular distance ``omega`` from ``P`` and an azimuth ``psi`` around ``P`` (0 = dorsal,
+90 deg = lateral, +-180 deg = ventral, -90 deg = medial). The nsdgeneral-like mask is
``omega <= W * shape(psi)`` (longest ventrally), with ``W`` set so the mask holds
``mask_fraction`` of the vertices; the hierarchy level is ``h = omega / (W * shape(psi))``,
0 at the pole and 1 at the mask border. Positions in the "cortical disc" ``(X, Y) = h (cos psi,
sin psi)`` place ROIs and smooth random fields.

Retinotopy: the left hemisphere sees the right visual field (x >= 0), the right hemisphere the
left (x <= 0); dorsal vertices see the lower field (y > 0, y points down), ventral ones the upper
field. Eccentricity grows with ``h`` up to the early/late boundary (h = 0.4), then RF centres
converge towards the fovea while RF sizes grow. Early areas V1, V2, V3 (and ventral hV4) are
wedges of 35 deg of azimuth around the medial (calcarine) direction, with polar angle reversing
at each border (vertical meridian at V1/V2, horizontal at V2/V3).

Response model (used by :mod:`synth_response`): visual vertices (kind 1) respond to
``(1 - g(h)) * energy inside the RF + g(h) * sum_c w_c * category c coverage inside the RF``,
``g`` a sigmoid centred at h = 0.45; category weights peak in the floc ROIs written to the
Algonauts masks. Memory vertices (kind 2, a dorsal-medial patch) respond to a feature of the
images 1..32 slots back; answer vertices (kind 3, a dorsal patch) to the button and RT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .truth import KIND_ANSWER, KIND_MEMORY, KIND_NONE, KIND_VISUAL

EARLY_H = 0.4
CATEGORY_MID_H = 0.45

ROI_NAMES = {
    "prf-visualrois": ("V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"),
    "floc-bodies": ("EBA", "FBA-1", "FBA-2", "mTL-bodies"),
    "floc-faces": ("OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"),
    "floc-places": ("OPA", "PPA", "RSC"),
    "floc-words": ("OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"),
    "streams": ("early", "midventral", "midlateral", "midparietal", "ventral", "lateral", "parietal"),
}
FLOC_CLASS_OF_CATEGORY = ("floc-faces", "floc-bodies", "floc-places", "floc-words")

#: floc ROI patches: class -> list of (h, psi in degrees, radius in disc units). h > 1 lies
#: outside the nsdgeneral mask (RSC, like NSD where the Algonauts mask adds it).
FLOC_PATCHES = {
    "floc-faces": [(0.55, 75, 0.09), (0.63, 160, 0.08), (0.78, 165, 0.08), (0.9, -150, 0.07), (0.96, 178, 0.06)],
    "floc-bodies": [(0.6, 100, 0.11), (0.66, 138, 0.07), (0.8, 140, 0.07), (0.92, -165, 0.06)],
    "floc-places": [(0.55, 10, 0.1), (0.7, -112, 0.1), (1.1, -75, 0.12)],
    "floc-words": [(0.55, 125, 0.06), (0.66, 120, 0.06), (0.8, 118, 0.06), (0.75, 152, 0.05), (0.93, -138, 0.05)],
}
#: kind patches in (h range, psi range in degrees)
MEMORY_PATCH = ((0.6, 1.0), (-70.0, 0.0))
ANSWER_PATCH = ((0.65, 1.0), (0.0, 40.0))



@dataclass(frozen=True)
class Cortex:
    """Planted properties of one hemisphere, each array (n_vertices,) unless noted.

    Attributes:
        nsdgeneral: bool, the nsdgeneral-like mask.
        challenge: bool, nsdgeneral plus RSC (the Algonauts mask before NaN vertices drop).
        hierarchy: float32, 0 at the occipital pole, 1 at the mask border (>1 outside).
        rf_x, rf_y, rf_size: float32 RF centre (grid_sample convention) and Gaussian sigma.
        kind: int8, 0 none (outside the mask), 1 visual, 2 memory, 3 answer.
        category_mix: float32, g(h): weight of category content vs energy (visual vertices).
        category_weights: float32 (n_vertices, 4), preference over CATEGORIES (rows sum to 1).
        ncsnr_scale: float32 in [0, 1], planted image-locked SNR rank (uniform over the challenge
            mask; high early, low anterior), mapped to ncsnr_range by the response model.
        labels: atlas name -> int16 label over all vertices (the ROI_NAMES atlases).
    """

    nsdgeneral: np.ndarray
    challenge: np.ndarray
    hierarchy: np.ndarray
    rf_x: np.ndarray
    rf_y: np.ndarray
    rf_size: np.ndarray
    kind: np.ndarray
    category_mix: np.ndarray
    category_weights: np.ndarray
    ncsnr_scale: np.ndarray
    labels: dict


def _frame(hemi: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pole P and tangent axes (up, lateral) at P for one hemisphere."""
    side = -1.0 if hemi == "lh" else 1.0  # lateral is -x on the left sphere
    p = np.array([-0.08 * side, -0.9, -0.43])
    p /= np.linalg.norm(p)
    up = np.array([0.0, 0.0, 1.0]) - p[2] * p
    up /= np.linalg.norm(up)
    lat = np.cross(p, up)
    if lat[0] * side < 0:
        lat = -lat
    return p, up, lat


def _shape(psi: np.ndarray) -> np.ndarray:
    """Relative mask extent along azimuth psi (radians): longest ventrally, shortest dorsally."""
    return 1.0 + 0.35 * np.cos(psi - np.pi) + 0.12 * np.cos(psi - np.deg2rad(80))


def _wrap_deg(a: np.ndarray) -> np.ndarray:
    return (a + 180.0) % 360.0 - 180.0


def _smooth_field(rng: np.random.Generator, X: np.ndarray, Y: np.ndarray, n_waves: int = 6) -> np.ndarray:
    """A smooth random field over the cortical disc, values roughly in [-1, 1]."""
    f = np.zeros_like(X)
    for _ in range(n_waves):
        k = rng.uniform(1.0, 4.0)
        th = rng.uniform(0, 2 * np.pi)
        f += np.cos(k * (np.cos(th) * X + np.sin(th) * Y) + rng.uniform(0, 2 * np.pi))
    return f / np.sqrt(n_waves / 2)


def plant_cortex(sphere: np.ndarray, hemi: str, mask_fraction: float, rng: np.random.Generator) -> Cortex:
    """Plant the cortex of one hemisphere.

    Args:
        sphere: float array (n_vertices, 3), sphere coordinates of the mesh.
        hemi: "lh" or "rh".
        mask_fraction: fraction of vertices in the nsdgeneral-like mask.
        rng: random generator (smooth random fields of category preference and SNR).
    """
    n = sphere.shape[0]
    u = sphere / np.linalg.norm(sphere, axis=1, keepdims=True)
    p, up, lat = _frame(hemi)
    omega = np.arccos(np.clip(u @ p, -1, 1))
    t = u - (u @ p)[:, None] * p[None, :]
    psi = np.arctan2(t @ lat, t @ up)
    ratio = omega / _shape(psi)
    k = max(1, int(round(mask_fraction * n)))
    w = np.sort(ratio)[k - 1]
    h = ratio / w
    nsdgeneral = h <= 1.0
    X, Y = h * np.cos(psi), h * np.sin(psi)
    psi_deg = np.rad2deg(psi)

    # retinotopy
    delta = _wrap_deg(psi_deg + 90.0)  # 0 at the medial (calcarine) direction, > 0 dorsal
    band = np.abs(delta) / 35.0
    frac = band % 2.0
    theta = 0.5 * np.pi * np.where(frac <= 1.0, frac, 2.0 - frac)  # angle from horizontal meridian
    ecc = 0.04 + 0.9 * np.clip(h / EARLY_H, 0, 1) ** 1.2
    shrink = 1.0 - 0.7 * np.clip((h - EARLY_H) / (1 - EARLY_H), 0, 1)
    ecc = ecc * shrink
    xsign = 1.0 if hemi == "lh" else -1.0
    rf_x = xsign * ecc * np.cos(theta)
    rf_y = np.sign(delta + 1e-9) * ecc * np.sin(theta)
    rf_size = 0.05 + 0.12 * ecc + 0.45 * np.clip(h, 0, 1) ** 1.5

    # ROI labels over the whole hemisphere
    labels = {}
    prf = np.zeros(n, dtype=np.int16)
    early = nsdgeneral & (h < EARLY_H * 1.05)
    area = np.floor(band).astype(int)  # 0 V1, 1 V2, 2 V3, 3 hV4
    ventral = delta < 0
    for a in range(3):
        sel = early & (area == a)
        prf[sel & ventral] = 2 * a + 1
        prf[sel & ~ventral] = 2 * a + 2
    prf[early & (area == 3) & ventral] = 7
    labels["prf-visualrois"] = prf

    streams = np.zeros(n, dtype=np.int16)
    sector = np.where((psi_deg > 30) & (psi_deg <= 120), 1, np.where((psi_deg > -60) & (psi_deg <= 30), 2, 0))
    streams[nsdgeneral & (h < EARLY_H)] = 1
    mid = nsdgeneral & (h >= EARLY_H) & (h < 0.65)
    high = nsdgeneral & (h >= 0.65)
    streams[mid] = 2 + sector[mid]
    streams[high] = 5 + sector[high]
    labels["streams"] = streams

    cat_w = np.zeros((n, 4))
    for c, cls in enumerate(FLOC_CLASS_OF_CATEGORY):
        lab = np.zeros(n, dtype=np.int16)
        for i, (hc, pc, r) in enumerate(FLOC_PATCHES[cls]):
            xc, yc = hc * np.cos(np.deg2rad(pc)), hc * np.sin(np.deg2rad(pc))
            d2 = (X - xc) ** 2 + (Y - yc) ** 2
            lab[d2 <= r**2] = i + 1
            cat_w[:, c] += 3.0 * np.exp(-d2 / (2 * (1.2 * r) ** 2))
        labels[cls] = lab
        cat_w[:, c] += 0.4 * np.log1p(np.exp(2.0 * _smooth_field(rng, X, Y)))  # smooth background preference
    cat_w /= cat_w.sum(axis=1, keepdims=True)

    challenge = nsdgeneral | (labels["floc-places"] == 3)
    kind = np.where(challenge, KIND_VISUAL, KIND_NONE).astype(np.int8)
    patches = ((MEMORY_PATCH[0], MEMORY_PATCH[1], KIND_MEMORY), (ANSWER_PATCH[0], ANSWER_PATCH[1], KIND_ANSWER))
    for (h0, h1), (p0, p1), kd in patches:
        kind[nsdgeneral & (h >= h0) & (h <= h1) & (psi_deg > p0) & (psi_deg <= p1)] = kd

    mix = 1.0 / (1.0 + np.exp(-(h - CATEGORY_MID_H) / 0.07))
    # SNR: high in early cortex, lower anteriorly, with a smooth random modulation in [0, 1]
    # mapped through its rank within the challenge mask -> uniform in [0, 1] there (spread NC)
    raw = 1.0 - 0.75 * np.clip(h, 0, 1.2) + 0.25 * _smooth_field(rng, X, Y)
    inside = np.flatnonzero(challenge)
    snr = np.clip(raw, 0.0, 1.0)
    snr[inside] = (np.argsort(np.argsort(raw[inside], kind="stable"), kind="stable") + 0.5) / len(inside)

    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return Cortex(
        nsdgeneral=nsdgeneral, challenge=challenge, hierarchy=f32(h), rf_x=f32(rf_x), rf_y=f32(rf_y),
        rf_size=f32(rf_size), kind=kind, category_mix=f32(mix), category_weights=f32(cat_w),
        ncsnr_scale=f32(snr), labels=labels,
    )
