"""Surface maps of a dataset with voxels: the voxel units (hemi 2) are skipped, the vertices drawn."""

from __future__ import annotations

import numpy as np

from brainnet.data.layout import HEMI_VOLUME
from brainnet.plotting.placement import to_mesh_values


def test_voxel_units_are_skipped_on_the_meshes():
    hemi = np.array([0, 0, 1, HEMI_VOLUME, HEMI_VOLUME])
    index = np.array([2, 0, 1, 0, 7])  # voxel indices may exceed the mesh and repeat vertex numbers
    lh, rh = to_mesh_values(np.arange(5.0), hemi, index, (4, 3))
    np.testing.assert_array_equal(lh, [1.0, np.nan, 0.0, np.nan])
    np.testing.assert_array_equal(rh, [np.nan, 2.0, np.nan])
