"""Voxel units in the position encoding: the vertices' encodings are today's, with or without voxels;
voxels form a third block beyond the right hemisphere at the spheres' mm scale."""

from __future__ import annotations

import numpy as np
import torch

from brainnet.data.layout import HEMI_VOLUME
from brainnet.models.posenc import SphereEncoder, VertexEncodings, normalize_sphere_coords


def _units(rng, n_vertices=60, n_voxels=25):
    xyz = rng.normal(size=(n_vertices, 3))
    sphere = 100.0 * xyz / np.linalg.norm(xyz, axis=1, keepdims=True)
    hemi = rng.integers(0, 2, n_vertices)
    scanner = rng.uniform(-12, 12, size=(n_voxels, 3)) + np.array([5.0, -20.0, -8.0])
    return sphere.astype(np.float32), hemi, scanner.astype(np.float32)


def test_vertex_positions_are_the_two_sphere_layout_and_unchanged_by_voxels(rng):
    sphere, hemi, scanner = _units(rng)
    surface = normalize_sphere_coords(sphere, hemi)
    # the two-sphere layout, written out: rh moved by 2 r (1 + gap), shifted by r, scaled to span / x extent
    r = float(np.linalg.norm(sphere, axis=1).max())
    shift, scale = 2.2 * r, 100.0 / (2.2 * r + 2 * r)
    want = (sphere + np.c_[shift * hemi, np.zeros((len(hemi), 2))] + r) * scale
    np.testing.assert_allclose(surface.numpy(), want, rtol=1e-5, atol=1e-4)
    mixed = normalize_sphere_coords(np.r_[sphere, scanner], np.r_[hemi, np.full(len(scanner), HEMI_VOLUME)])
    assert torch.equal(mixed[: len(hemi)], surface)
    vox = mixed[len(hemi):].numpy().astype(np.float64)
    assert vox[:, 0].min() > surface[:, 0].max().item()  # a third block beyond the right hemisphere
    np.testing.assert_allclose(vox.mean(0), [(2 * shift + r) * scale, r * scale, r * scale], rtol=1e-4)
    d_mm = np.linalg.norm(scanner[:, None] - scanner[None], axis=-1)
    np.testing.assert_allclose(np.linalg.norm(vox[:, None] - vox[None], axis=-1), d_mm * scale, rtol=1e-4, atol=1e-4)


def test_vertex_encodings_identical_with_and_without_voxels(rng):
    sphere, hemi, scanner = _units(rng)
    enc = SphereEncoder(n_freqs=8)
    plain = VertexEncodings({"s1": sphere, "s2": sphere[:30]}, {"s1": hemi, "s2": hemi[:30]}, enc)
    vox_hemi = np.r_[hemi, np.full(len(scanner), HEMI_VOLUME)]
    mixed = VertexEncodings({"s1": np.r_[sphere, scanner], "s2": scanner},
                            {"s1": vox_hemi, "s2": np.full(len(scanner), HEMI_VOLUME)}, enc)
    assert mixed.radius == plain.radius
    assert torch.equal(mixed.get("s1")[: len(hemi)], plain.get("s1"))
    assert mixed.get("s2").shape == (len(scanner), enc.out_dim) and torch.isfinite(mixed.get("s2")).all()
    assert torch.equal(mixed.get("s2"), mixed.get("s1")[len(hemi):])  # same voxels, same codes
