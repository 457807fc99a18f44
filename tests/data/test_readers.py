"""Readers of single NSD / Algonauts files and the pure preparation functions, on small files
written here (the generated nsd-mini tree is exercised in test_prepare.py)."""

from __future__ import annotations

import pickle

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.io
from PIL import Image

from brainnet.data.formats import algonauts as alg
from brainnet.data.formats import freesurfer as fs
from brainnet.data.formats import nsd
from brainnet.data.layout import BEHAVIOUR_COLUMNS as COLUMN_NAMES
from brainnet.data.layout import BEHAVIOUR_GROUPS as GROUPS
from brainnet.data.layout import N_BEHAVIOUR as N_FEATURES
from brainnet.data.noise_ceiling import noise_ceiling
from brainnet.data.prep.behaviour import behaviour_features, showing_links
from brainnet.data.prep.tables import assign_splits, memory_index, select_vertices, zscore_session
from brainnet.errors import DataFormatError


def _write_mgh(path, data):
    data = np.asarray(data, np.float32)
    if data.ndim == 4 and data.shape[3] == 1:  # nibabel keeps at most 3 dims for one frame
        data = data[..., 0]
    nib.save(nib.MGHImage(data, np.eye(4)), str(path))


# ----------------------------------------------------------------------------- NSD files


def test_read_betas_chunks_match_nibabel(tmp_path, rng):
    data = rng.normal(size=(37, 1, 1, 11)).astype(np.float32)
    data[5] = np.nan
    path = tmp_path / "lh.betas_session01.mgh"
    _write_mgh(path, data)
    full = nsd.read_betas(path, frames_per_chunk=4)
    np.testing.assert_array_equal(full, np.asarray(nib.load(str(path)).dataobj).reshape(37, 11))
    rows = np.array([30, 2, 5, 36])
    part = nsd.read_betas(path, rows=rows, n_vertices=37, n_trials=11, frames_per_chunk=3)
    np.testing.assert_array_equal(part, data[rows, 0, 0, :])
    with pytest.raises(DataFormatError, match="11 trials|12 trials"):
        nsd.read_betas(path, n_trials=12)
    with pytest.raises(DataFormatError, match="38 vertices"):
        nsd.read_betas(path, n_vertices=38)


def test_truncated_mgh_is_reported(tmp_path, rng):
    path = tmp_path / "rh.ncsnr.mgh"
    _write_mgh(path, rng.normal(size=(50, 1, 1, 1)))
    raw = path.read_bytes()
    path.write_bytes(raw[:284 + 4 * 20])
    with pytest.raises(DataFormatError, match="truncated") as info:
        nsd.read_ncsnr(path)
    assert info.value.path == str(path)
    path.write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match="rh.ncsnr.mgh"):
        fs.mgh_info(path)


def test_read_ctab_and_label(tmp_path):
    ctab = tmp_path / "streams.mgz.ctab"
    ctab.write_text("0 Unknown\n  1   early \n\n2 midventral\t\n")
    assert fs.read_ctab(ctab) == {0: "Unknown", 1: "early", 2: "midventral"}
    mgz = tmp_path / "lh.streams.mgz"
    nib.save(nib.MGHImage(np.array([0, 1, 2, 2, 0], np.float32).reshape(5, 1, 1), np.eye(4)), str(mgz))
    codes, names = fs.read_label(mgz, ctab, n_vertices=5)
    assert codes.tolist() == [0, 1, 2, 2, 0] and codes.dtype == np.int16 and names[2] == "midventral"
    ctab.write_text("0 Unknown\n1 early\n")
    with pytest.raises(DataFormatError, match="codes \\[2\\] missing"):
        fs.read_label(mgz, ctab)
    ctab.write_text("1 early\n2 midventral\n")
    with pytest.raises(DataFormatError, match="0 Unknown"):
        fs.read_ctab(ctab)
    ctab.write_text("0 Unknown\nx early\n")
    with pytest.raises(DataFormatError, match="line 2"):
        fs.read_ctab(ctab)


def test_read_expdesign_accepts_whole_floats_rejects_fractions(tmp_path, rng):
    path = tmp_path / "nsd_expdesign.mat"
    stim = np.zeros((2, 12, 75), np.uint8)
    stim[:, :, 3:10] = 1
    fields = dict(masterordering=(np.arange(30) % 20 + 1)[None], subjectim=rng.permutation(40)[None, :20] + 1,
                  sharedix=np.arange(1, 6)[None], stimpattern=stim, basiccnt=np.zeros((3, 2)))
    scipy.io.savemat(path, {**fields, "masterordering": fields["masterordering"].astype(float)})
    design = nsd.read_expdesign(path)
    assert design.masterordering.dtype == np.int64 and design.stimpattern.shape == (2, 12, 75)
    np.testing.assert_array_equal(design.nsd_ids(1, 25), fields["subjectim"][0, np.arange(25) % 20] - 1)
    scipy.io.savemat(path, {**fields, "masterordering": fields["masterordering"] + 0.5})
    with pytest.raises(DataFormatError, match="non-integer"):
        nsd.read_expdesign(path)
    scipy.io.savemat(path, {k: v for k, v in fields.items() if k != "stimpattern"})
    with pytest.raises(DataFormatError, match="stimpattern"):
        nsd.read_expdesign(path)


def test_read_responses_checks_columns_and_numbers(tmp_path):
    path = tmp_path / "responses.tsv"
    table = pd.DataFrame({c: [1, 1] for c in nsd.RESPONSE_COLUMNS})
    table["TRIAL"] = [1, 2]
    table["RT"] = [512.5, np.nan]
    table.to_csv(path, sep="\t", index=False, na_rep="NaN")
    read = nsd.read_responses(path)
    assert np.isnan(read["RT"].iloc[1]) and read["TRIAL"].dtype == np.int64
    table["RT"] = ["fast", "1"]
    table.to_csv(path, sep="\t", index=False, na_rep="NaN")
    with pytest.raises(DataFormatError, match="column RT"):
        nsd.read_responses(path)
    table.drop(columns=["RT", "BUTTON"]).to_csv(path, sep="\t", index=False)
    with pytest.raises(DataFormatError, match="missing \\['RT', 'BUTTON'\\]"):
        nsd.read_responses(path)


def test_stimuli_rows_any_order(tmp_path, rng):
    path = tmp_path / "nsd_stimuli.hdf5"
    brick = rng.integers(0, 255, size=(9, 6, 6, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f["imgBrick"] = brick
    with nsd.NSDStimuli(path) as stim:
        np.testing.assert_array_equal(stim[[7, 2, 7, 0]], brick[[7, 2, 7, 0]])
        with pytest.raises(DataFormatError, match="ids below 9"):
            stim[[9]]
    path.write_bytes(b"\x89HDF not really")
    with pytest.raises(DataFormatError, match="HDF5"):
        nsd.NSDStimuli(path)


def test_read_patch(tmp_path):
    path = tmp_path / "lh.full.flat.patch.3d"
    rec = np.zeros(2, dtype=[("vno", ">i4"), ("x", ">f4"), ("y", ">f4"), ("z", ">f4")])
    rec["vno"], rec["x"], rec["y"] = [3, -1], [1.5, -2.0], [0.5, 4.0]
    path.write_bytes(np.array([-1, 2], ">i4").tobytes() + rec.tobytes())
    coords = fs.read_patch(path, 4)
    np.testing.assert_allclose(coords[[0, 2]], [[-2, 4, 0], [1.5, 0.5, 0]])
    assert np.isnan(coords[[1, 3]]).all()
    path.write_bytes(np.array([-1, 5], ">i4").tobytes())
    with pytest.raises(DataFormatError, match="patch"):
        fs.read_patch(path, 4)


# ----------------------------------------------------------------------------- Algonauts files


def test_list_images_and_png(tmp_path):
    folder = tmp_path / "training_images"
    folder.mkdir()
    for k, nsd_id in enumerate([13, 7, 400], start=1):
        Image.fromarray(np.full((5, 5, 3), k, np.uint8)).save(folder / f"train-{k:04d}_nsd-{nsd_id:05d}.png")
    listing = alg.list_images(folder, "train")
    assert listing.nsd_ids.tolist() == [13, 7, 400] and listing.counter.tolist() == [1, 2, 3]
    assert alg.read_png(listing.paths[1])[0, 0].tolist() == [2, 2, 2]
    (folder / "train-0005_nsd-00001.png").write_bytes(b"x")
    with pytest.raises(DataFormatError, match="counters"):
        alg.list_images(folder, "train")
    with pytest.raises(DataFormatError, match="readable PNG"):
        alg.read_png(folder / "train-0005_nsd-00001.png")
    (folder / "train-6_nsd-1.png").write_bytes(b"x")
    with pytest.raises(DataFormatError, match="train-NNNN_nsd-NNNNN"):
        alg.list_images(folder, "train")


def test_roi_mapping_and_masks(tmp_path):
    path = tmp_path / "mapping_floc-faces.npy"
    np.save(path, {0: "Unknown", 1: "OFA"}, allow_pickle=True)
    assert alg.read_roi_mapping(path) == {0: "Unknown", 1: "OFA"}
    np.save(path, np.array(["Unknown", "OFA"]), allow_pickle=True)
    with pytest.raises(DataFormatError, match="dict"):
        alg.read_roi_mapping(path)
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DataFormatError, match="mapping_floc-faces.npy"):
        alg.read_roi_mapping(path)
    mask = tmp_path / "lh.all-vertices_fsaverage_space.npy"
    np.save(mask, np.array([0, 1, 1, 0]))
    assert alg.read_vertex_mask(mask, 4).tolist() == [False, True, True, False]
    with pytest.raises(DataFormatError, match="5 vertices"):
        alg.read_vertex_mask(mask, 5)
    np.save(mask, np.array([0, 2, 1, 0]))
    with pytest.raises(DataFormatError, match="0/1"):
        alg.read_vertex_mask(mask)


# ----------------------------------------------------------------------------- pure functions


def test_showing_links_match_brute_force(rng):
    ids = rng.integers(0, 12, size=200)
    prev, first, nxt = showing_links(ids)
    for t in range(ids.size):
        earlier = np.flatnonzero(ids[:t] == ids[t])
        later = np.flatnonzero(ids[t + 1:] == ids[t]) + t + 1
        assert prev[t] == (earlier[-1] if earlier.size else -1)
        assert first[t] == (earlier[0] if earlier.size else -1)
        assert nxt[t] == (later[0] if later.size else -1)


def test_behaviour_prev_next_use_full_history(rng):
    n = 90
    ids = rng.integers(1, 20, size=n)
    table = pd.DataFrame({
        "SESSION": np.repeat([1, 2, 3], 30), "RUN": np.tile(np.repeat([1, 2], 15), 3),
        "TRIAL": np.tile(np.arange(1, 16), 6), "73KID": ids, "TIME": np.arange(n) / 500.0,
        "RT": rng.normal(600, 100, n), "BUTTON": rng.integers(1, 3, n).astype(float),
        "CHANGEMIND": 0.0, "TOTAL1": 1.0, "TOTAL2": 0.0, "ISCORRECT": 1.0, "ISCORRECTCURRENT": 1.0,
        "ISOLDCURRENT": 0.0, "MEMORYRECENT": np.nan, "MEMORYFIRST": np.nan,
    })
    table.loc[4, "RT"] = np.nan
    feats = behaviour_features(table)
    assert feats.shape == (n, N_FEATURES) == (n, len(COLUMN_NAMES)) and not np.isnan(feats).any()
    assert sorted(sum(GROUPS.values(), ())) == list(range(35))
    prev, _, nxt = showing_links(ids)
    for t in range(n):
        want_prev = feats[prev[t], [0, 1, 2, 11, 12, 15, 16]] if prev[t] >= 0 else np.zeros(7)
        want_next = feats[nxt[t], [0, 1, 2, 11, 12, 15, 16]] if nxt[t] >= 0 else np.zeros(7)
        np.testing.assert_array_equal(feats[t, 21:28], want_prev)
        np.testing.assert_array_equal(feats[t, 28:35], want_next)
    # NaN RT -> column mean; RT z-scores have mean 0 over the subject
    assert abs(feats[:, 0].mean()) < 1e-5 and feats[4, 0] == pytest.approx(0.0, abs=1e-6)
    # minutes since the previous showing (TIME is in days); an unseen image counts as 500 days ago
    minutes = table["TIME"].to_numpy() * 24 * 60
    raw = np.log1p(np.where(prev >= 0, minutes - minutes[np.maximum(prev, 0)], 500 * 24 * 60))
    np.testing.assert_allclose(feats[:, 11], (raw - raw.mean()) / raw.std(), atol=1e-5)


def test_memory_index_matches_brute_force(rng):
    n_slots = 20
    rows = []
    for s in (1, 2):
        for r in (1, 2, 3):
            slots = np.sort(rng.choice(np.arange(3, n_slots), size=9, replace=False))
            rows += [(s, r, p) for p in slots]
    session, run, slot = (np.array(c) for c in zip(*rows))
    image = rng.integers(0, 50, size=len(rows))
    mem = memory_index(session, run, slot, image, n_slots, n_frames=33)
    for t in range(len(rows)):
        for k in range(33):
            same = np.flatnonzero((session == session[t]) & (run == run[t]) & (slot == slot[t] - k))
            assert mem[t, k] == (image[same[0]] if same.size else -1)


def test_assign_splits_image_disjoint_and_predict(rng):
    ids = [rng.integers(0, 300, 900), rng.integers(100, 400, 700)]
    held = [np.arange(900) >= 750, np.arange(700) >= 600]
    splits, image_split = assign_splits(ids, held, (0.8, 0.1, 0.1), seed=3)
    for sid, h, sp in zip(ids, held, splits):
        assert (sp[h] == 3).all() and (sp[~h] < 3).all()
        for code in (0, 1, 2):
            others = set(sid[(sp != code) & ~h].tolist())
            assert not set(sid[sp == code].tolist()) & others
            assert all(image_split[i] == code for i in sid[sp == code])
    again, _ = assign_splits(ids, held, (0.8, 0.1, 0.1), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(splits, again))
    counts = np.bincount(list(image_split.values()), minlength=3)
    assert counts[0] == round(0.8 * len(image_split))


def test_noise_ceiling_and_auto_selection(rng):
    assert noise_ceiling(np.array([0.0, 1.0, np.nan]))[1] == pytest.approx(0.75)
    nc = rng.uniform(0, 1, 500)
    mask = np.zeros(500, bool)
    mask[:100] = True
    nc[:100] = rng.uniform(0.5, 0.9, 100)
    selected, thr = select_vertices(mask, nc, "auto")
    added = selected & ~mask
    assert nc[added].mean() >= nc[mask].mean()
    nxt = np.max(np.where(~selected, nc, -1))
    assert (np.sum(nc[added]) + nxt) / (added.sum() + 1) < nc[mask].mean()
    assert thr == pytest.approx(nc[added].min())
    sel, thr = select_vertices(mask, nc, 0.95)
    assert np.array_equal(sel, mask | (nc >= 0.95)) and thr == 0.95
    assert np.array_equal(select_vertices(mask, nc, None)[0], mask)


def test_zscore_session(rng):
    x = rng.normal(3, 2, size=(5, 40)).astype(np.float32)
    x[1] = np.nan
    x[2, 7] = np.nan
    x[3] = 4.0
    z, has_nan = zscore_session(x)
    assert has_nan.tolist() == [False, True, True, False, False]
    np.testing.assert_allclose(z[[0, 4]].mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(z[[0, 4]].std(1), 1, atol=1e-5)
    assert (z[1] == 0).all() and (z[3] == 0).all() and z[2, 7] == 0
    ok = np.delete(z[2], 7)
    assert abs(ok.mean()) < 1e-5 and abs(ok.std() - 1) < 1e-5


def test_zscore_in_place_equals_copy(rng):
    x = rng.normal(1, 3, size=(6, 30)).astype(np.float32)
    x[2, :4] = np.nan
    z_copy, nan_copy = zscore_session(x)
    assert np.isnan(x[2, 0])  # the input is untouched
    z_inplace, nan_inplace = zscore_session(x, copy=False)
    assert z_inplace is x
    np.testing.assert_array_equal(z_copy, z_inplace)
    np.testing.assert_array_equal(nan_copy, nan_inplace)


def test_npy_row_writer_fills_resumes_and_replaces(tmp_path, rng):
    from brainnet.data.io import NpyRowWriter

    path = tmp_path / "x.npy"
    data = rng.normal(size=(10, 3, 2)).astype(np.float16)
    with NpyRowWriter(path, data.shape, np.float16) as w:
        assert not w.resumed
        w.write_rows(0, data[:4])
    with NpyRowWriter(path, data.shape, np.float16) as w:  # resumed: first rows kept
        assert w.resumed
        w.write_rows(4, data[4:])
        with pytest.raises(ValueError, match="do not fit"):
            w.write_rows(8, data[:4])
    np.testing.assert_array_equal(np.load(path), data)
    with NpyRowWriter(path, (4, 3), np.uint8) as w:  # other shape: a fresh zero file
        assert not w.resumed
    assert np.load(path).tolist() == [[0, 0, 0]] * 4
