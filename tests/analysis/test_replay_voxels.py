"""Memory replay on an fship dataset (tiny nsd-mini: challenge vertices + func1mm voxels): the voxel
groups, the planted hippocampal lag peak (k = 12) recovered inside its bootstrap CI, the shuffled
control at chance, and the figures (cortex beside voxels, the voxel ROI montage)."""

from __future__ import annotations

import numpy as np
import pytest

from brainnet.analysis.planted import planted_hippocampus_lag_profile, planted_lag_profile, planted_peak_lag
from brainnet.analysis.replay_results import vertex_groups
from brainnet.analysis.replay_voxels import VOXEL_REPLAY_GROUPS, recover_peak, recovery_table, voxel_groups
from brainnet.analysis.truth import kind_mask, vertex_truth
from brainnet.data import PreparedDataset
from brainnet.data.summary import dataset_summary
from brainnet.training.replay_grid import run_replay

from tests._mini_cache import mini_tree, prepared_tiny, prepared_tiny_fship, tiny_replay_features

#: Lag 0 (the image on screen: LGN) and 9..15 around the planted hippocampal peak (12); the peak is
#: searched in WINDOW. Fewer lags than the notebook's 0..16 keep the grid to 16 ridge fits.
LAGS = [0, *range(9, 16)]
WINDOW = (9, 15)


@pytest.fixture(scope="module")
def fship(tmp_path_factory):
    return PreparedDataset(prepared_tiny_fship(tmp_path_factory))


@pytest.fixture(scope="module")
def truth_file(tmp_path_factory):
    return mini_tree(tmp_path_factory).ground_truth


@pytest.fixture(scope="module")
def groups(fship, truth_file):
    return {"subj01": vertex_groups(fship, "subj01", truth_file)}


@pytest.fixture(scope="module")
def replay(fship, groups, tmp_path_factory):
    features = tiny_replay_features(tmp_path_factory)  # made on the fsaverage dataset of the same tree
    assert np.array_equal(PreparedDataset(prepared_tiny(tmp_path_factory)).image_ids, fship.image_ids)
    return run_replay(fship, ["subj01"], LAGS, features, tmp_path_factory.mktemp("replay-fship"),
                      vertex_groups=groups, progress=False)


def test_voxel_groups_name_the_voxel_units(fship, groups, truth_file, tmp_path_factory):
    subj = fship.subject("subj01")
    vox = voxel_groups(fship, "subj01")
    assert list(vox) == list(VOXEL_REPLAY_GROUPS)
    for name, idx in vox.items():
        assert len(idx) > 10 and subj.is_voxel[idx].all(), name
    np.testing.assert_array_equal(vox["H"], np.flatnonzero(subj.roi_labels("H")[0] == 1))
    codes, names = subj.roi_labels("thalamus")
    np.testing.assert_array_equal(vox["LGN"], np.flatnonzero(codes == names.index("LGN")))
    assert set(vox["HHHB"]) < set(vox["H"])
    assert list(voxel_groups(fship, "subj01", ["CA1"])) == ["CA1"]
    with pytest.raises(KeyError, match="neither"):
        voxel_groups(fship, "subj01", ["V1v"])
    assert voxel_groups(PreparedDataset(prepared_tiny(tmp_path_factory)), "subj01") == {}
    # the replay groups: cortex = the surface; planted kinds on the surface only; then the voxel groups
    g = groups["subj01"]
    np.testing.assert_array_equal(g["cortex"], np.arange(subj.n_surface))
    df = vertex_truth(truth_file, fship, "subj01")
    np.testing.assert_array_equal(g["planted memory"], np.flatnonzero(kind_mask(df, "memory") & ~subj.is_voxel))
    assert kind_mask(df, "memory")[vox["H"]].all()  # the hippocampal voxels are memory voxels, kept apart
    assert list(g)[-len(vox):] == list(vox)
    summary = dataset_summary(fship).loc["subj01"]
    assert summary["vertices"] == subj.n_surface and summary["voxels"] == subj.is_voxel.sum()


def test_hippocampal_peak_recovered_within_its_bootstrap_ci(replay, groups, truth_file):
    planted = planted_peak_lag(planted_hippocampus_lag_profile(truth_file), window=WINDOW)
    assert planted == 12 and planted_peak_lag(planted_lag_profile(truth_file)) in (6, 7)  # cortex peaks earlier
    sr = replay["subj01"]
    rec = recover_peak(sr, "H", planted, window=WINDOW, n_boot=300, seed=0, n_units=len(groups["subj01"]["H"]))
    assert rec.planted_in_ci and rec.found and abs(rec.peak - planted) <= 1.0, rec
    assert rec.peak_ci[1] - rec.peak_ci[0] < 3.0
    prof = sr.group_profile("H")
    assert prof[LAGS.index(12)] > 0.1 and prof[LAGS.index(12)] > 1.5 * prof[LAGS.index(9)]
    lgn = sr.group_profile("LGN")  # early-visual voxels: the image on screen only
    assert lgn[0] > 0.2 and np.abs(lgn[1:]).max() < 0.05
    table = recovery_table([rec])
    assert table.loc[0, "group"] == "H" and bool(table.loc[0, "planted in CI"]) and table.loc[0, "n_units"] > 100
    assert rec.to_dict()["peak_ci"] == list(rec.peak_ci)


def test_shuffled_control_at_chance_on_the_voxels(replay):
    sr = replay["subj01"]
    for group in ("H", "LGN", "cortex", "all"):
        test = sr.chance(group)
        assert test.at_chance and abs(test.mean_r) < 0.01, (group, test)
    rec = recover_peak(sr, "H", 12, window=WINDOW, n_boot=50)
    assert rec.control_at_chance and abs(rec.control_mean_r) < 0.01
    assert np.abs(sr.group_profile("H", control=True)).max() < 0.05


def test_cortex_beside_voxels_figure(replay, groups):
    from brainnet.plotting.replay import plot_region_lag_profiles

    g = groups["subj01"]
    voxels = [n for n in VOXEL_REPLAY_GROUPS if n in g]
    cortex = ["cortex", "planted memory"]
    fig = plot_region_lag_profiles(replay, {"cortex": {"subj01": cortex}, "voxels": {"subj01": voxels}},
                                   marks={"planted hippocampal peak": 12})
    left, right = fig.axes
    assert len(left.lines) == 2 * len(cortex) + 2 and len(right.lines) == 2 * len(voxels) + 2  # + mark, zero line
    assert [t.get_text() for t in right.get_legend().get_texts()][: len(voxels)] == voxels
    assert left.get_shared_y_axes().joined(left, right)


def test_voxel_roi_montage(fship, tmp_path_factory):
    from brainnet.plotting.volume import plot_voxel_rois, voxel_label_image, voxel_volume

    subj = fship.subject("subj01")
    img, names = voxel_label_image(subj)
    np.testing.assert_array_equal(img.affine, subj.volume_affine)
    assert img.shape == subj.volume_shape and names[1] == "thalamus LGN" and names[-1] == "MTL HT"
    i, j, k = subj.voxel_ijk.T
    labels = np.asarray(img.dataobj)[i, j, k]
    thal, mtl = subj.roi_labels("thalamus")[0][subj.is_voxel], subj.roi_labels("MTL")[0][subj.is_voxel]
    np.testing.assert_array_equal(labels, np.where(thal > 0, thal, np.where(mtl > 0, mtl + 5, 0)))
    assert (labels > 0).all() and (np.asarray(img.dataobj) > 0).sum() == subj.is_voxel.sum()
    nc = voxel_volume(subj, subj.noise_ceiling)
    np.testing.assert_allclose(nc[i, j, k], subj.noise_ceiling[subj.is_voxel])
    fig = plot_voxel_rois(subj, background=subj.noise_ceiling, n_slices=3)
    assert len(fig.axes[-1].get_legend().get_texts()) == len(names) - 1
    with pytest.raises(ValueError, match="shape"):
        voxel_volume(subj, np.zeros(3))
    with pytest.raises(ValueError, match="no voxel units"):
        voxel_label_image(PreparedDataset(prepared_tiny(tmp_path_factory)).subject("subj01"))
