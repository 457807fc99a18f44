"""``prepare`` without the NSD tree: an image-level dataset from nsd-mini's Algonauts 2023 release alone.

Checked against the release files themselves and against the trial-level preparation of the same
tree; the fsaverage surfaces from a folder, from nilearn's fetcher (replaced by a local stand-in)
and offline without either; bad releases; interruption and resume."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainnet.cli import main
from brainnet.data import PreparedDataset
from brainnet.data.formats import algonauts as alg
from brainnet.data.formats import freesurfer as fs
from brainnet.data.layout import SPLIT_CODES
from brainnet.data.prep import fsaverage as fsavg
from brainnet.data.prep.pipeline import WORK_DIR, prepare
from brainnet.errors import DataFormatError, MissingInputError

from _mini_cache import PREPARE_KW, clone_tree, output_digests, prepared_image_tiny, prepared_tiny

SUBJECTS = ("subj01", "subj02")


@pytest.fixture(scope="module")
def fsdir(tree):
    return tree.nsd / "nsddata/freesurfer/fsaverage"


@pytest.fixture(scope="module")
def image_data(tmp_path_factory, tree):
    return PreparedDataset(prepared_image_tiny(tmp_path_factory))


@pytest.fixture(scope="module")
def trial_data(tmp_path_factory):
    return PreparedDataset(prepared_tiny(tmp_path_factory))


@pytest.mark.parametrize("name", SUBJECTS)
def test_rows_are_the_release_per_image(image_data, tree, name):
    s = image_data.subject(name)
    subj = tree.algonauts / name
    train = alg.list_images(subj / "training_split/training_images", "train")
    test = alg.list_images(subj / "test_split/test_images", "test")
    release = np.concatenate([np.load(subj / f"training_split/training_fmri/{h}_training_fmri.npy")
                              for h in ("lh", "rh")], axis=1)
    n = len(train)
    assert s.n_trials == n + len(test) and release.shape == (n, s.n_vertices)
    np.testing.assert_array_equal(s.trials["nsd_id"], np.concatenate([train.nsd_ids, test.nsd_ids]))
    np.testing.assert_array_equal(image_data.image_ids[s.image], s.trials["nsd_id"])
    fmri = np.asarray(s.fmri)
    assert fmri.dtype == np.float16
    assert fmri[:n].tobytes() == release.astype(np.float16).tobytes()  # exactly the release's rows
    assert not fmri[n:].any()  # test images: no fMRI
    np.testing.assert_array_equal(s.trials["trial"], np.arange(s.n_trials))
    assert not (s.trials["session"].any() or s.trials["run"].any() or s.trials["slot"].any())
    np.testing.assert_array_equal(s.memory_index[:, 0], s.image)
    assert (s.memory_index[:, 1:] == -1).all() and s.memory_index.shape == (s.n_trials, 33)
    for row in (0, n - 1, n, s.n_trials - 1):  # the stored pixels are the PNGs (32 px, no resize)
        png = (train.paths + test.paths)[row]
        np.testing.assert_array_equal(image_data.images[s.image[row]], alg.read_png(png))


def test_splits_image_disjoint_and_predict_is_the_test_images(image_data):
    split_of = {}
    for name in SUBJECTS:
        s = image_data.subject(name)
        n_train = s.counts["algonauts_images"]["train"]
        split = s.split
        assert (split[n_train:] == SPLIT_CODES["predict"]).all() and (split[:n_train] != SPLIT_CODES["predict"]).all()
        np.testing.assert_array_equal(s.split_rows("heldout"), s.split_rows("predict"))
        for nsd_id, code in zip(s.trials["nsd_id"][:n_train].tolist(), split[:n_train].tolist()):
            assert split_of.setdefault(nsd_id, code) == code  # one split per image, across subjects
        assert s.has_fmri("train") and s.has_fmri(["train", "val", "test"])
        assert not s.has_fmri("predict") and not s.has_fmri("heldout") and not s.has_fmri("all")
    counts = np.bincount(list(split_of.values()), minlength=3)
    assert counts[0] > 10 * counts[1] > 0 and counts[2] > 0


@pytest.mark.parametrize("name", SUBJECTS)
def test_vertices_and_rois_equal_the_trial_level_dataset(image_data, trial_data, name):
    a, b = image_data.subject(name), trial_data.subject(name)
    for key in ("hemi", "index", "sphere"):
        np.testing.assert_array_equal(a.vertices[key], b.vertices[key])
    assert a.challenge.all() and b.challenge.all()
    assert set(a.rois) == set(b.rois)
    for roi_class in alg.ROI_CLASSES:
        np.testing.assert_array_equal(a.rois[roi_class][0], b.rois[roi_class][0])
        assert a.rois[roi_class][1] == b.rois[roi_class][1]
    assert image_data.subject(name).counts["mesh_vertices_per_hemi"] == b.counts["mesh_vertices_per_hemi"]


def test_manifest_inputs_and_missing_inputs(image_data, trial_data, tree, fsdir, capsys):
    assert image_data.level == "image" and trial_data.level == "trial"
    assert image_data.inputs == dict.fromkeys(("trial_order", "memory", "behaviour", "noise_ceiling"), False)
    assert all(trial_data.inputs.values()) and trial_data.has("behaviour")
    src = image_data.sources
    assert src["nsd_dir"] is None and src["image_source"] == "png" and Path(src["fsaverage"]) == fsdir.resolve()
    assert image_data.nsd_mini_root == trial_data.nsd_mini_root == tree.root.resolve()
    assert not any(k.endswith(("behaviour.npy", "noise_ceiling.npy")) for k in image_data.manifest["files"])
    s = image_data.subject(1)
    for attr in ("behaviour", "noise_ceiling", "ncsnr"):
        with pytest.raises(MissingInputError, match=r"no .*Algonauts 2023 release alone.*--nsd-dir"):
            getattr(s, attr)
    with pytest.raises(MissingInputError, match="memory replay needs it"):
        image_data.require("memory", "memory replay")
    with pytest.raises(ValueError, match="unknown input"):
        image_data.has("pupil")
    trial_data.require("noise_ceiling", "scores")
    assert main(["verify", "-q", str(image_data.root)]) == 0
    assert "files verified" in capsys.readouterr().out


def _gifti(path: Path, *arrays: np.ndarray) -> str:
    img = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(a) for a in arrays])
    nib.save(img, str(path))
    return str(path)


def test_surfaces_from_nilearn_stand_in(tmp_path, tree, fsdir, image_data, monkeypatch):
    """No folder, online: the meshes come from nilearn's fetcher (here a stand-in serving nsd-mini's meshes)."""
    asked = []

    def fetch(mesh):
        asked.append(mesh)
        bunch = {}
        for hemi, side in (("lh", "left"), ("rh", "right")):
            for surf, key in (("sphere", "sphere"), ("inflated", "infl"), ("white", "white")):
                coords, faces = fs.read_surface(fsdir / "surf" / f"{hemi}.{surf}")
                bunch[f"{key}_{side}"] = _gifti(tmp_path / f"{key}_{side}.gii", coords, faces)
            bunch[f"sulc_{side}"] = _gifti(tmp_path / f"sulc_{side}.gii",
                                           fs.read_morph(fsdir / "surf" / f"{hemi}.sulc"))
        return bunch

    monkeypatch.delenv("BRAINNET_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr("brainnet.net.network_available", lambda host="", **kw: host == fsavg.NILEARN_HOST)
    monkeypatch.setattr(fsavg, "_fetch_nilearn", fetch)
    out = prepare(None, tree.algonauts, tmp_path / "out", subjects=[1], **PREPARE_KW)
    assert asked == ["fsaverage4"]
    data = PreparedDataset(out)
    assert data.sources["fsaverage"] == fsavg.NILEARN_SOURCE
    for key in ("lh_sphere_coords", "rh_white_faces", "rh_inflated_coords", "lh_sulc"):
        np.testing.assert_array_equal(data.surfaces[key], image_data.surfaces[key])
    np.testing.assert_array_equal(data.subject(1).vertices["sphere"], image_data.subject(1).vertices["sphere"])
    assert data.subject(1).fmri.tobytes() == image_data.subject(1).fmri.tobytes()


def test_offline_without_folder_says_what_to_provide(tmp_path, tree, monkeypatch, capsys):
    monkeypatch.setenv("BRAINNET_OFFLINE", "1")
    out = tmp_path / "out"
    with pytest.raises(DataFormatError, match=r"--fsaverage-dir \$FREESURFER_HOME/subjects/fsaverage4.*"
                                              r"nsddata/freesurfer/fsaverage.*offline mode is set"):
        prepare(None, tree.algonauts, out, progress=False)
    assert not out.exists()
    assert main(["prepare", "--alg-dir", str(tree.algonauts), "--out-dir", str(out)]) == 2
    assert "brainnet: error: fsaverage surfaces: expected a FreeSurfer fsaverage4 folder" in capsys.readouterr().err
    assert not out.exists()


def _drop(path: Path) -> None:
    if path.is_dir():
        for p in sorted(path.rglob("*"), reverse=True):
            p.unlink() if not p.is_dir() else p.rmdir()
        path.rmdir()
    else:
        path.unlink()


def _shorter_mask(subj: Path) -> Path:
    path = subj / "roi_masks/rh.all-vertices_fsaverage_space.npy"
    mask = np.load(path)
    _drop(path)
    np.save(path, mask[:-1])
    return path


def _rename_first_png(subj: Path, name_of) -> tuple[Path, Path]:
    """Rename the first training PNG to ``name_of(sorted files)``; returns (folder, new file)."""
    folder = subj / "training_split/training_images"
    files = sorted(folder.iterdir())
    target = folder / name_of(files)
    os.symlink(os.readlink(files[0]), target)
    files[0].unlink()
    return folder, target


BAD = {
    # fMRI without images / images without fMRI
    "no_training_images": lambda s: (_drop(s / "training_split/training_images"),
                                     s / "training_split/training_images")[1],
    "no_fmri": lambda s: (_drop(s / "training_split/training_fmri/lh_training_fmri.npy"),
                          s / "training_split/training_fmri/lh_training_fmri.npy")[1],
    "mask_length": _shorter_mask,
    "png_name": lambda s: _rename_first_png(s, lambda files: "train-0001_nsd-x.png")[1],
    # two training images with one NSD id: the folder is named
    "duplicate_id": lambda s: _rename_first_png(s, lambda files: "train-0001_" + files[1].name.split("_")[1])[0],
}


@pytest.mark.parametrize(("case", "with_folder"), [(c, True) for c in BAD] + [("mask_length", False)],
                         ids=[*BAD, "mask_length-no-folder"])
def test_bad_release_names_the_file_and_leaves_nothing(tmp_path, tree, fsdir, monkeypatch, case, with_folder):
    """A mask of no fsaverage length is named before the offline error (no folder) or against the
    folder's sphere; every other bad input is named with the folder given."""
    monkeypatch.setenv("BRAINNET_OFFLINE", "1")
    alg_root = clone_tree(tree.algonauts, tmp_path / "alg")
    named = BAD[case](alg_root / "subj01")
    out = tmp_path / "out"
    with pytest.raises(DataFormatError) as err:
        prepare(None, alg_root, out, fsaverage_dir=fsdir if with_folder else None, progress=False)
    assert str(named) in str(err.value)
    if case == "mask_length" and not with_folder:
        assert "fsaverage mesh" in str(err.value)
    assert not out.exists()


def test_interrupted_run_resumes_to_identical_files(tmp_path, tree, fsdir, image_data):
    out = tmp_path / "out"
    kw = dict(fsaverage_dir=fsdir, image_chunk=100, **PREPARE_KW)

    def stop_after_first(subject, chunk):
        if subject == "subj02" and chunk == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare(None, tree.algonauts, out, on_session_done=stop_after_first, **kw)
    assert (out / WORK_DIR).is_dir() and not (out / "manifest.json").exists()
    done = []
    prepare(None, tree.algonauts, out, on_session_done=lambda s, c: done.append((s, c)), **kw)
    assert done and all(s == "subj02" and c > 2 for s, c in done)  # only what was missing
    assert not (out / WORK_DIR).exists()
    ours, ref = output_digests(out), output_digests(image_data.root)
    ours.pop("manifest.json"), ref.pop("manifest.json")
    assert ours == ref  # other chunking, same bytes


def test_tables_and_trial_dataset_adapt(image_data):
    from brainnet.data.summary import dataset_summary, run_table
    from brainnet.data.trials import TrialDataset

    table = dataset_summary(image_data)
    assert table["mean_nc"].isna().all() and (table["predict_trials"] == table["predict_images"]).all()
    with pytest.raises(MissingInputError, match="run_table needs it"):
        run_table(image_data, "subj01", 0, 0)
    ds = TrialDataset(image_data, 1, split="val")
    assert "behaviour" not in ds.inputs and set(ds[0]) == {"subject", "trial", "image", "image_index",
                                                           "memory_index", "fmri"}
    with pytest.raises(MissingInputError, match="behaviour"):
        TrialDataset(image_data, 1, inputs=("fmri", "behaviour"))


def test_noise_ceiling_from_nsd_ncsnr_files(tmp_path, tree, fsdir, trial_data):
    """``ncsnr_dir``: the noise ceiling the release hides, from NSD's ncsnr files, equals the trial-level one."""
    only_nc = tmp_path / "nsd-ncsnr"
    for src in tree.nsd.glob("nsddata_betas/ppdata/subj01/fsaverage/betas_fithrf_GLMdenoise_RR/*.ncsnr.mgh"):
        dst = only_nc / src.relative_to(tree.nsd)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    data = PreparedDataset(prepare(None, tree.algonauts, tmp_path / "out", subjects=[1], fsaverage_dir=fsdir,
                                   ncsnr_dir=only_nc, **PREPARE_KW))
    assert data.inputs == {"trial_order": False, "memory": False, "behaviour": False, "noise_ceiling": True}
    got, want = data.subject(1), trial_data.subject(1)
    assert np.array_equal(got.vertices["index"], want.vertices["index"])
    np.testing.assert_array_equal(got.noise_ceiling, want.noise_ceiling)
    assert got.noise_ceiling.std() > 0
    with pytest.raises(DataFormatError, match=r"subj02.*lh\.ncsnr\.mgh"):
        prepare(None, tree.algonauts, tmp_path / "out2", subjects=[2], fsaverage_dir=fsdir, ncsnr_dir=only_nc,
                **PREPARE_KW)
    assert not (tmp_path / "out2").exists()
