"""Training on an fship dataset (tiny nsd-mini: challenge vertices + func1mm voxels): fit_encoder with a
small MemModel scores every unit, the voxels included, and keeps them out of the Algonauts submission."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from brainnet.data import PreparedDataset
from brainnet.data.layout import HEMI_VOLUME

from tests._mini_cache import prepared_tiny, prepared_tiny_fship, tiny_features, tiny_fit_config


@pytest.fixture(scope="module")
def fship(tmp_path_factory):
    return prepared_tiny_fship(tmp_path_factory)


def test_mem_model_trains_and_scores_voxel_units(fship, tmp_path_factory, tmp_path):
    from brainnet.training.fit import fit_encoder
    from brainnet.training.submission import challenge_columns

    features = tiny_features(tmp_path_factory)  # tokens of the fsaverage dataset of the same tree: same image rows
    assert np.array_equal(PreparedDataset(prepared_tiny(tmp_path_factory)).image_ids, PreparedDataset(fship).image_ids)
    subj = PreparedDataset(fship).subject("subj01")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_encoder(tiny_fit_config(fship, tmp_path, max_epochs=1, max_steps=4, top_k=1), features=features)
    assert result.global_step == 4
    per_unit = result.evaluation["subj01"].per_vertex
    assert len(per_unit) == subj.n_vertices
    voxel = per_unit["hemi"].to_numpy() == HEMI_VOLUME
    np.testing.assert_array_equal(voxel, subj.is_voxel)
    for column in ("r", "r2", "score", "nc"):
        values = per_unit[column].to_numpy()[voxel]
        assert np.isfinite(values).all(), column
    assert per_unit["r"].to_numpy()[voxel].std() > 0  # scored, not a constant fill
    rois = result.evaluation["subj01"].roi_table
    assert {"H", "HHHB", "PrC", "pulvinar", "thalamus", "MTL"} <= set(rois["atlas"])
    assert np.isfinite(rois.loc[rois["atlas"] == "H", "mean_r"]).all()
    # the Algonauts submission holds the challenge vertices of each hemisphere, never a voxel
    columns = challenge_columns(fship, "subj01")
    assert sum(len(c) for c in columns.values()) == int(subj.challenge.sum())
    assert not subj.is_voxel[np.concatenate(list(columns.values()))].any()
