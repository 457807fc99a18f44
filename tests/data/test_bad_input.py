"""Malformed inputs: each corrupt copy of the generated tree gives a DataFormatError naming the
bad file, and ``prepare`` leaves no output behind. NaN-only vertices are data, not errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.io

from brainnet.data.prep import prepare
from brainnet.errors import DataFormatError

from _mini_cache import clone_tree, tree_digest

BETAS = "nsd/nsddata_betas/ppdata/subj01/fsaverage/betas_fithrf_GLMdenoise_RR"
DESIGN = "nsd/nsddata/experiments/nsd/nsd_expdesign.mat"
RESP = "nsd/nsddata/ppdata/subj01/behav/responses.tsv"
LABEL = "nsd/nsddata/freesurfer/fsaverage/label"
SURF = "nsd/nsddata/freesurfer/fsaverage/surf"
HDF5 = "nsd/nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
ALG = "algonauts2023/subj01"


def _mgh(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def _save_mgh(path: Path, data: np.ndarray) -> None:
    path.unlink()  # never write through the symlink into the shared tree
    nib.save(nib.MGHImage(np.asarray(data, np.float32), np.eye(4)), str(path))


def _write_bytes(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def _edit_tsv(root: Path, edit) -> Path:
    path = root / RESP
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    table = edit(table)
    path.unlink()
    table.to_csv(path, sep="\t", index=False)
    return path


def _edit_design(root: Path, edit) -> Path:
    path = root / DESIGN
    mat = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    mat = edit(mat)
    path.unlink()
    scipy.io.savemat(path, mat)
    return path


def _missing_betas(root):
    path = root / BETAS / "lh.betas_session02.mgh"
    path.unlink()
    return path


def _truncated_mgh(root):
    path = root / BETAS / "rh.betas_session01.mgh"
    raw = path.read_bytes()
    _write_bytes(path, raw[: len(raw) // 2])
    return path


def _wrong_mgh_frames(root):
    path = root / BETAS / "lh.betas_session03.mgh"
    _save_mgh(path, _mgh(path)[..., :749])
    return path


def _hemisphere_vertex_mismatch(root):
    path = root / BETAS / "rh.betas_session02.mgh"
    _save_mgh(path, _mgh(path)[:-1])
    return path


def _float_expdesign(root):
    def edit(mat):
        mat["masterordering"] = mat["masterordering"].astype(float) + 0.5
        return mat
    return _edit_design(root, edit)


def _expdesign_missing_field(root):
    return _edit_design(root, lambda mat: {k: v for k, v in mat.items() if k != "subjectim"})


def _bad_stimpattern_counts(root):
    def edit(mat):
        stim = mat["stimpattern"].copy()
        stim[0, 0, np.flatnonzero(stim[0, 0])[5]] = 0
        mat["stimpattern"] = stim
        return mat
    return _edit_design(root, edit)


def _missing_tsv_column(root):
    return _edit_tsv(root, lambda t: t.drop(columns=["BUTTON"]))


def _rt_as_text(root):
    def edit(t):
        t.loc[10, "RT"] = "slow"
        return t
    return _edit_tsv(root, edit)


def _tsv_image_disagrees_with_design(root):
    def edit(t):
        t.loc[5, "73KID"] = str(int(t.loc[5, "73KID"]) + 1)
        return t
    return _edit_tsv(root, edit)


def _tsv_truncated(root):
    return _edit_tsv(root, lambda t: t.iloc[:-10])


def _missing_ncsnr(root):
    path = root / BETAS / "lh.ncsnr.mgh"
    path.unlink()
    return path


def _corrupt_hdf5(root):
    path = root / HDF5
    raw = path.read_bytes()
    _write_bytes(path, b"\x00" * 512 + raw[512:])
    return path


def _mismatched_algonauts_counts(root):
    path = root / ALG / "training_split/training_fmri/lh_training_fmri.npy"
    data = np.load(path)
    path.unlink()
    np.save(path, data[:-1])
    return path


def _algonauts_fmri_columns(root):
    path = root / ALG / "training_split/training_fmri/rh_training_fmri.npy"
    data = np.load(path)
    path.unlink()
    np.save(path, data[:, :-3])
    return path


def _test_image_from_training_sessions(root):
    folder = root / ALG / "test_split/test_images"
    train_first = sorted((root / ALG / "training_split/training_images").iterdir())[0]
    first = sorted(folder.iterdir())[0]
    first.rename(folder / f"test-0001_nsd-{train_first.name.split('nsd-')[1]}")
    return folder


def _bad_png_name(root):
    folder = root / ALG / "training_split/training_images"
    _write_bytes(folder / "train-12_nsd-3.png", b"")
    return folder / "train-12_nsd-3.png"


def _wrong_ctab(root):
    path = root / LABEL / "streams.mgz.ctab"
    lines = [ln for ln in path.read_text().splitlines() if ln.split() and ln.split()[0] != "3"]
    _write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


def _ctab_without_unknown(root):
    path = root / LABEL / "nsdgeneral.mgz.ctab"
    _write_bytes(path, b"1 nsdgeneral\n")
    return path


def _fractional_label(root):
    path = root / LABEL / "lh.nsdgeneral.mgz"
    data = _mgh(path).astype(np.float32)
    data[:10] = 0.5
    path.unlink()
    nib.save(nib.MGHImage(data, np.eye(4)), str(path))
    return path


def _mapping_not_a_dict(root):
    path = root / ALG / "roi_masks/mapping_floc-faces.npy"
    _write_bytes(path, b"")
    np.save(path, np.array(["Unknown", "OFA", "FFA-1"], dtype=object), allow_pickle=True)
    return path


def _mapping_pickle_garbage(root):
    path = root / ALG / "roi_masks/mapping_floc-words.npy"
    _write_bytes(path, pickle.dumps([("VWFA-1", 2)]))
    return path


def _roi_mask_wrong_length(root):
    path = root / ALG / "roi_masks/rh.prf-visualrois_fsaverage_space.npy"
    data = np.load(path)
    path.unlink()
    np.save(path, data[:-5])
    return path


def _vertex_mask_not_binary(root):
    path = root / ALG / "roi_masks/lh.all-vertices_fsaverage_space.npy"
    data = np.load(path).astype(np.int64)
    data[data == 1] = 2
    path.unlink()
    np.save(path, data)
    return path


def _truncated_sphere(root):
    path = root / SURF / "lh.sphere"
    raw = path.read_bytes()
    _write_bytes(path, raw[:100])
    return path


def _corrupt_png(root):
    folder = root / "algonauts2023/subj02/training_split/training_images"
    path = sorted(folder.iterdir())[7]
    _write_bytes(path, path.read_bytes()[:40])
    return path


CASES = {
    "missing betas file": (_missing_betas, {}),
    "truncated mgh": (_truncated_mgh, {}),
    "wrong mgh shape (749 trials)": (_wrong_mgh_frames, {}),
    "vertex count of rh betas != rh mesh": (_hemisphere_vertex_mismatch, {}),
    "float expdesign": (_float_expdesign, {}),
    "expdesign without subjectim": (_expdesign_missing_field, {}),
    "bad stimpattern counts": (_bad_stimpattern_counts, {}),
    "missing TSV column": (_missing_tsv_column, {}),
    "RT as text": (_rt_as_text, {}),
    "73KID disagrees with design": (_tsv_image_disagrees_with_design, {}),
    "TSV rows missing": (_tsv_truncated, {}),
    "missing ncsnr": (_missing_ncsnr, {}),
    "corrupt HDF5": (_corrupt_hdf5, {}),
    "Algonauts fmri rows != png count": (_mismatched_algonauts_counts, {}),
    "Algonauts fmri columns != mask": (_algonauts_fmri_columns, {}),
    "test image from training sessions": (_test_image_from_training_sessions, {}),
    "malformed png name": (_bad_png_name, {}),
    "ctab missing a code": (_wrong_ctab, {}),
    "ctab without 0 Unknown": (_ctab_without_unknown, {}),
    "fractional label values": (_fractional_label, {}),
    "mapping pickle not a dict": (_mapping_not_a_dict, {}),
    "mapping file not a numpy pickle": (_mapping_pickle_garbage, {}),
    "roi mask wrong length": (_roi_mask_wrong_length, {}),
    "all-vertices mask not 0/1": (_vertex_mask_not_binary, {}),
    "truncated sphere": (_truncated_sphere, {}),
    "corrupt PNG (png image source)": (_corrupt_png, {"image_source": "png"}),
}


@pytest.fixture(scope="module")
def tree_before(tree):
    return tree_digest(tree.root)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_names_file_and_leaves_nothing(case, tree, tree_before, tmp_path):
    mutate, kwargs = CASES[case]
    src = clone_tree(tree.root, tmp_path / "src")
    bad = mutate(src)
    out = tmp_path / "out"
    with pytest.raises(DataFormatError) as info:
        prepare(src / "nsd", src / "algonauts2023", out, image_size=32, progress=False, **kwargs)
    assert Path(info.value.path) == bad
    assert str(bad) in str(info.value) and info.value.expected and info.value.found
    assert not out.exists(), sorted(out.rglob("*"))


def test_bad_input_keeps_an_existing_dataset(tree, tmp_path):
    src = clone_tree(tree.root, tmp_path / "src")
    out = prepare(src / "nsd", src / "algonauts2023", tmp_path / "out", subjects=[1], image_size=8, progress=False)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    _rt_as_text(src)
    with pytest.raises(DataFormatError, match="responses.tsv"):
        prepare(src / "nsd", src / "algonauts2023", out, subjects=[1], image_size=8, progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_nan_only_vertex_is_masked_not_an_error(tree, tmp_path):
    src = clone_tree(tree.root, tmp_path / "src")
    mask = np.load(src / ALG / "roi_masks/lh.all-vertices_fsaverage_space.npy").astype(bool)
    all_nan, one_session = np.flatnonzero(mask)[[3, 10]]
    for s in range(1, 5):
        path = src / BETAS / f"lh.betas_session{s:02d}.mgh"
        data = _mgh(path)
        data[all_nan] = np.nan
        if s == 2:
            data[one_session, 0, 0, :7] = np.nan
        _save_mgh(path, data)
    out = prepare(src / "nsd", src / "algonauts2023", tmp_path / "out", subjects=["subj01"], image_size=8,
                  progress=False)
    with np.load(out / "subj01/vertices.npz") as v:
        col_all = int(np.flatnonzero((v["hemi"] == 0) & (v["index"] == all_nan))[0])
        col_one = int(np.flatnonzero((v["hemi"] == 0) & (v["index"] == one_session))[0])
    valid = np.load(out / "subj01/vertex_valid.npy")
    assert not valid[col_all] and not valid[col_one] and valid.sum() == valid.size - 2
    fmri = np.load(out / "subj01/fmri.npy")
    assert np.isfinite(fmri).all() and (fmri[:, col_all] == 0).all()
    with np.load(out / "subj01/trials.npz") as t:
        s2 = np.flatnonzero(t["session"] == 2)
    assert (fmri[s2[:7], col_one] == 0).all()
    rest = fmri[s2[7:], col_one].astype(np.float64)
    assert abs(rest.mean()) < 1e-2 and abs(rest.std() - 1) < 1e-2
    assert json.loads((out / "manifest.json").read_text())["subjects"]["subj01"]["n_valid_vertices"] == valid.size - 2


def test_fixture_tree_untouched(tree, tree_before):
    assert tree_digest(tree.root) == tree_before
