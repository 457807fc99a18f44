"""Tests of the synthetic scene generator."""

from __future__ import annotations

import numpy as np
import pytest

from brainnet.data.mini.scenes import CATEGORIES, SceneObject, category_maps, draw_scene, energy_map


def test_deterministic_for_seed():
    a, oa = draw_scene(np.random.default_rng(3), 64)
    b, ob = draw_scene(np.random.default_rng(3), 64)
    c, _ = draw_scene(np.random.default_rng(4), 64)
    assert np.array_equal(a, b) and oa == ob
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("size", [32, 64, 97])
def test_shapes_and_dtypes(size):
    rng = np.random.default_rng(0)
    img, objs = draw_scene(rng, size, n_objects=(2, 3))
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert 2 <= len(objs) <= 3
    for o in objs:
        assert 0 <= o.category < len(CATEGORIES)
        assert -1 <= o.cx <= 1 and -1 <= o.cy <= 1 and o.size > 0
    cm = category_maps(objs, 8)
    assert cm.shape == (4, 8, 8) and cm.dtype == np.float32
    assert np.all(cm >= 0) and np.all(cm.sum(0) <= 1 + 1e-6)
    em = energy_map(img, 8)
    assert em.shape == (8, 8) and em.dtype == np.float32 and np.all(em >= 0)


def test_category_maps_put_mass_where_object_is():
    # a face in the upper-left quadrant (y down), a word box lower-right
    objs = [SceneObject(0, -0.5, -0.5, 0.3), SceneObject(3, 0.5, 0.5, 0.3)]
    cm = category_maps(objs, 4)
    assert cm[0, 0:2, 0:2].sum() > 0.9 * cm[0].sum() > 0
    assert cm[3, 2:4, 2:4].sum() > 0.9 * cm[3].sum() > 0
    assert cm[1].sum() == 0 and cm[2].sum() == 0
    # coverage of a disc of radius 0.3 in a [-1,1]^2 square of 4x4 cells (area per cell 0.25)
    assert cm[0].sum() * 0.25 == pytest.approx(np.pi * 0.09, rel=0.05)


def test_occlusion_later_object_wins():
    objs = [SceneObject(1, 0.0, 0.0, 0.5), SceneObject(2, 0.0, 0.0, 0.5)]
    cm = category_maps(objs, 4)
    assert cm[1].sum() == 0 and cm[2].sum() > 0


def test_objects_are_drawn_where_they_are_said_to_be():
    """Edge energy inside object discs exceeds the background on average over scenes."""
    rng = np.random.default_rng(1)
    inside, outside = [], []
    for _ in range(30):
        img, objs = draw_scene(rng, 64, n_objects=(1, 2))
        em = energy_map(img, 16)
        cover = category_maps(objs, 16).sum(0)
        inside.append(em[cover > 0.5].mean())
        outside.append(em[cover == 0].mean())
    assert np.mean(inside) > 1.5 * np.mean(outside)


def test_energy_map_localises_an_edge():
    img = np.zeros((32, 32, 3), dtype=np.uint8)
    img[:, 24:] = 255  # vertical edge at column 24 -> cell column 3 of 4 (pixels 24..31)
    em = energy_map(img, 4)
    assert em[:, 3].min() > 0 and em[:, :2].max() == 0
    assert np.argmax(em.sum(0)) in (2, 3)


def test_bad_input_raises():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        draw_scene(rng, 4)
    with pytest.raises(ValueError):
        draw_scene(rng, 32, n_objects=(3, 1))
    with pytest.raises(ValueError):
        category_maps([], 0)
    with pytest.raises(ValueError):
        energy_map(np.zeros((8, 8, 4)), 2)
