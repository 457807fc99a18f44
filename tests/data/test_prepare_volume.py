"""Volume voxels beside surface vertices: ``prepare`` on nsd-mini's func1mm files recovers the planted
truth (voxel selection, scanner positions, ROI labels and groups, NC from ncsnr.nii.gz, z-scored
int16 / 300 betas) in the spaces fship / hip_func1mm / full_fsaverage and for the b2 betas; a killed
run resumes byte-identically; bad NIfTI inputs are named."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainnet.data import PreparedDataset
from brainnet.data.formats import nifti
from brainnet.data.layout import HEMI_VOLUME
from brainnet.data.prep import prepare
from brainnet.data.prep.config import PrepareConfig
from brainnet.data.prep.pipeline import WORK_DIR
from brainnet.errors import DataFormatError

from _mini_cache import (
    FSHIP_KW,
    clone_tree,
    output_digests,
    prepared_tiny,
    prepared_tiny_fship,
)

ROOT = Path(__file__).resolve().parents[2]
B2 = "betas_fithrf"
B3 = "betas_fithrf_GLMdenoise_RR"


@pytest.fixture(scope="module")
def fship(tmp_path_factory):
    return prepared_tiny_fship(tmp_path_factory)


def _zscore(x: np.ndarray) -> np.ndarray:
    """Independent reference: z-score rows over trials (ddof 0, NaN rows -> 0)."""
    x = x.astype(np.float64)
    sd = x.std(axis=1, keepdims=True)
    z = (x - x.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1)
    return np.nan_to_num(np.where(sd > 0, z, 0.0))


def _source_betas(tree, name: str, session: int, subj, folder: str) -> np.ndarray:
    """float64 [V, T] of the prepared units read from the source files with nibabel."""
    hemi, index = subj.hemi, subj.vertices["index"]
    base = tree.nsd / "nsddata_betas/ppdata" / name
    parts = []
    for h, hname in enumerate(("lh", "rh")):
        if (hemi == h).any():
            mgh = np.asarray(nib.load(base / "fsaverage" / folder / f"{hname}.betas_session{session:02d}.mgh").dataobj)
            parts.append(mgh.reshape(mgh.shape[0], -1)[index[hemi == h]])
    if (hemi == HEMI_VOLUME).any():
        vol = np.asarray(nib.load(base / "func1mm" / folder / f"betas_session{session:02d}.nii.gz").dataobj)
        parts.append(vol.reshape(-1, vol.shape[-1])[index[hemi == HEMI_VOLUME]] / 300.0)
    return np.concatenate(parts)


def _check_units(root: Path, tree, truth: dict, name: str, folder: str, sessions=(1, 3)) -> None:
    subj = PreparedDataset(root).subject(name)
    hemi, index = subj.hemi, subj.vertices["index"]
    suffix = "_b2" if folder == B2 else ""
    # NC from the written ncsnr (surface: per hemisphere; voxels: ncsnr.nii.gz == truth)
    snr = np.zeros(hemi.size)
    for h, hname in enumerate(("lh", "rh")):
        snr[hemi == h] = truth[f"{name}_{hname}_ncsnr_written{suffix}"][index[hemi == h]]
    vox = hemi == HEMI_VOLUME
    snr[vox] = truth[f"{name}_vol_ncsnr_written{suffix}"].reshape(-1)[index[vox]] if vox.any() else 0
    snr2 = np.nan_to_num(snr) ** 2
    np.testing.assert_allclose(subj.noise_ceiling, snr2 / (snr2 + 1 / 3), rtol=1e-5, atol=1e-7)
    # betas: z-scored within session, the source values (int16 / 300 for voxels)
    for s in sessions:
        rows = np.flatnonzero(subj.trials["session"] == s)
        mine = np.asarray(subj.fmri[rows], np.float32).T
        np.testing.assert_allclose(mine, _zscore(_source_betas(tree, name, s, subj, folder)), atol=4e-3)
    nan_vertices = [truth[f"{name}_{h}_nan_vertices"] for h in ("lh", "rh")]
    invalid = np.zeros(hemi.size, bool)
    for h in (0, 1):
        invalid[hemi == h] = np.isin(index[hemi == h], nan_vertices[h])
    np.testing.assert_array_equal(subj.vertex_valid, ~invalid)


@pytest.mark.parametrize("name", ("subj01", "subj02"))
def test_fship_voxels_recover_planted_truth(fship, tmp_path_factory, tree, truth, name):
    subj = PreparedDataset(fship).subject(name)
    index = subj.vertices["index"]
    thal, mtl = truth[f"{name}_vol_thalamus"], truth[f"{name}_vol_MTL"]
    want = np.flatnonzero(((thal > 0) | (mtl > 0)).reshape(-1))
    assert subj.is_voxel.sum() == want.size > 0 and not subj.is_voxel[: subj.n_surface].any()
    np.testing.assert_array_equal(index[subj.is_voxel], want)
    assert subj.volume_shape == thal.shape and np.array_equal(subj.volume_affine, truth[f"{name}_vol_affine"])
    ijk = subj.voxel_ijk
    np.testing.assert_array_equal(thal[tuple(ijk.T)], subj.roi_labels("thalamus")[0][subj.is_voxel])
    np.testing.assert_array_equal(mtl[tuple(ijk.T)], subj.roi_labels("MTL")[0][subj.is_voxel])
    mm = np.c_[ijk, np.ones(len(ijk))] @ subj.volume_affine.T
    np.testing.assert_allclose(subj.vertices["sphere"][subj.is_voxel], mm[:, :3], atol=1e-4)
    assert not subj.challenge[subj.is_voxel].any()
    # groups: H = hippocampus (the planted memory voxels), pulvinar from the thalamus names
    labels, names = subj.roi_labels("MTL")
    h_codes = [names.index(n) for n in ("Sub", "CA1", "CA2", "CA3", "DG", "HT")]
    np.testing.assert_array_equal(subj.roi_labels("H")[0] == 1, np.isin(labels, h_codes) & subj.is_voxel)
    hippocampus = subj.roi_labels("H")[0][subj.is_voxel] == 1
    np.testing.assert_array_equal(hippocampus, truth[f"{name}_vol_kind"][tuple(ijk.T)] == 2)
    assert set(subj.roi_labels("pulvinar")[1]) == {"Unknown", "pulvinar"}
    assert (subj.roi_labels("HHHB")[0] <= subj.roi_labels("H")[0]).all()
    assert (subj.roi_labels("floc-faces")[0][subj.is_voxel] == 0).all()
    _check_units(fship, tree, truth, name, B3)
    # the surface part is today's fsaverage dataset, bit for bit
    surface = PreparedDataset(prepared_tiny(tmp_path_factory)).subject(name)
    assert surface.n_surface == subj.n_surface and surface.volume_shape is None and not surface.is_voxel.any()
    np.testing.assert_array_equal(np.asarray(subj.fmri[:, : subj.n_surface]), np.asarray(surface.fmri))
    np.testing.assert_array_equal(subj.noise_ceiling[: subj.n_surface], surface.noise_ceiling)


def test_hip_func1mm_b2_and_full_fsaverage_b2(tree, truth, tmp_path):
    hip = prepare(tree.nsd, tree.algonauts, tmp_path / "hip", subjects=["subj01"], space="hip_func1mm",
                  beta_version="b2", image_size=16, progress=False)
    subj = PreparedDataset(hip).subject("subj01")
    assert subj.is_voxel.all() and subj.n_surface == 0 and subj.counts["n_voxels"] == subj.n_vertices
    assert PreparedDataset(hip).manifest["parameters"]["beta_version"] == B2
    _check_units(hip, tree, truth, "subj01", B2)
    full = prepare(tree.nsd, tree.algonauts, tmp_path / "full", subjects=["subj01"], space="full_fsaverage",
                   beta_version=B2, image_size=16, progress=False)
    subj = PreparedDataset(full).subject("subj01")
    assert subj.n_vertices == subj.n_surface == 2 * 2562 and subj.counts["n_voxels"] == 0
    np.testing.assert_array_equal(subj.vertices["index"], np.r_[np.arange(2562), np.arange(2562)])
    _check_units(full, tree, truth, "subj01", B2, sessions=(2,))


def test_space_and_beta_version_options():
    assert PrepareConfig(beta_version="b3").beta_version == B3 and PrepareConfig(beta_version=B2).beta_version == B2
    for bad in (dict(space="func1mm"), dict(beta_version="b4"), dict(space="hip_func1mm", nc_threshold=0.1),
                dict(space="full_fsaverage", nc_threshold="auto")):
        with pytest.raises(ValueError):
            PrepareConfig(**bad)


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from brainnet.data.prep import prepare
    def hook(subject, session):
        os.kill(os.getpid(), signal.SIGKILL)
    prepare(sys.argv[1], sys.argv[2], sys.argv[3], space="fship", image_size=32, progress=False,
            on_session_done=hook)
""")


def test_killed_fship_prepare_resumes_to_identical_output(fship, tree, tmp_path):
    target = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(tree.nsd), str(tree.algonauts), str(target)],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (target / "manifest.json").exists() and len(list((target / WORK_DIR).rglob("session_*.npy"))) == 1
    prepare(tree.nsd, tree.algonauts, target, progress=False, **FSHIP_KW)
    assert output_digests(target) == output_digests(fship)


# --------------------------------------------------------------------------- bad inputs

VOL = "nsd/nsddata_betas/ppdata/subj01/func1mm/betas_fithrf_GLMdenoise_RR"
ROI = "nsd/nsddata/ppdata/subj01/func1mm/roi"


def _resave(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    path.unlink()  # never write through the symlink into the shared tree
    nib.save(nib.Nifti1Image(data, affine), str(path))


def _shift_affine(path: Path) -> None:
    img = nib.load(path)
    affine = img.affine.copy()
    affine[0, 3] += 2.0
    _resave(path, np.asarray(img.dataobj), affine)


def _crop(path: Path) -> None:
    img = nib.load(path)
    _resave(path, np.asarray(img.dataobj)[:-1], img.affine)


def _zero(path: Path) -> None:
    img = nib.load(path)
    _resave(path, np.zeros(img.shape, np.int16), img.affine)


@pytest.mark.parametrize("rel, corrupt, needle", [
    (f"{VOL}/betas_session02.nii.gz", _shift_affine, "affine"),
    (f"{VOL}/betas_session03.nii.gz", _crop, "grid"),
    (f"{VOL}/ncsnr.nii.gz", _crop, "grid"),
    (f"{ROI}/MTL.nii.gz", _shift_affine, "affine"),
    (f"{ROI}/MTL.nii.gz", lambda p: p.unlink(), "no such file"),
    (f"{ROI}/thalamus.nii.gz", _zero, "all-zero"),
])
def test_bad_volume_inputs_are_named(tree, tmp_path, rel, corrupt, needle):
    root = clone_tree(tree.root, tmp_path / "tree")
    corrupt(root / rel)
    out = tmp_path / "out"
    with pytest.raises(DataFormatError) as info:
        prepare(root / "nsd", root / "algonauts2023", out, subjects=["subj01"], space="hip_func1mm", image_size=16,
                progress=False)
    assert Path(rel).name in str(info.value) and needle in str(info.value).lower()
    assert not out.exists()


def test_truncated_volume_is_named(tree, tmp_path):
    src = tree.root / VOL / "betas_session01.nii.gz"
    data = nib.load(src).get_fdata()
    full = nib.Nifti1Image(data.astype(np.int16), nib.load(src).affine).to_bytes()
    path = tmp_path / "betas_session01.nii"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataFormatError, match="truncated") as info:
        nifti.read_masked(path, np.arange(10), scale=300)
    assert path.name in str(info.value)
