"""Planted truth: ``prepare`` on a generated nsd-mini tree recovers what the generator wrote;
resumability after a hard kill, no-op reruns, determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import nibabel.freesurfer as fs
import numpy as np
import pytest

from brainnet.data.formats import algonauts as alg
from brainnet.data.formats.nsd import read_responses
from brainnet.data.io import sha256_file
from brainnet.data.prep.behaviour import CARRIED, showing_links
from brainnet.data.prep.pipeline import WORK_DIR, is_finished, prepare

from _mini_cache import PREPARE_KW, mini_tree, output_digests, prepared_tiny, tree_digest

ROOT = Path(__file__).resolve().parents[2]
SUBJECTS = ("subj01", "subj02")


@pytest.fixture(scope="module")
def out(tmp_path_factory, tree):
    before = tree_digest(tree.root)
    path = prepared_tiny(tmp_path_factory)
    assert tree_digest(tree.root) == before, "prepare modified its source tree"
    return path


def _subject(out, name):
    folder = out / name
    with np.load(folder / "trials.npz") as t, np.load(folder / "vertices.npz") as v:
        trials, vertices = {k: t[k] for k in t.files}, {k: v[k] for k in v.files}
    return folder, trials, vertices


@pytest.mark.parametrize("name", SUBJECTS)
def test_trials_map_to_planted_slots_and_images(out, truth, name):
    _, trials, _ = _subject(out, name)
    slots = truth[f"{name}_slots"]  # [sessions, 12, 75], 0-based ids, -1 blank
    planted = slots[trials["session"] - 1, trials["run"] - 1, trials["slot"]]
    np.testing.assert_array_equal(trials["nsd_id"], planted)
    n_sessions = slots.shape[0]
    assert trials["nsd_id"].size == int((slots >= 0).sum()) == n_sessions * 750
    nsd_ids = np.load(out / "images/nsd_ids.npy")
    assert np.all(np.diff(nsd_ids) > 0)
    np.testing.assert_array_equal(nsd_ids[trials["image"]], trials["nsd_id"])
    # within a run the trial counter runs 1..n in slot order
    for s, r in [(1, 1), (n_sessions, 12)]:
        sel = (trials["session"] == s) & (trials["run"] == r)
        assert trials["trial"][sel].tolist() == list(range(1, sel.sum() + 1))
        assert np.all(np.diff(trials["slot"][sel]) > 0)


@pytest.mark.parametrize("name", SUBJECTS)
def test_memory_index_matches_planted_slot_sequence(out, truth, name):
    folder, trials, _ = _subject(out, name)
    mem = np.load(folder / "memory_index.npy")
    assert mem.dtype == np.int32 and mem.shape == (trials["session"].size, 33)
    nsd_ids = np.load(out / "images/nsd_ids.npy")
    slots = truth[f"{name}_slots"]
    k = np.arange(33)
    back = trials["slot"][:, None] - k[None, :]
    planted = np.where(back >= 0, slots[trials["session"][:, None] - 1, trials["run"][:, None] - 1,
                                        np.maximum(back, 0)], -1)
    recovered = np.where(mem >= 0, nsd_ids[np.maximum(mem, 0)], -1)
    np.testing.assert_array_equal(recovered, planted)
    assert (mem[:, 0] == trials["image"]).all()
    assert (mem[trials["slot"] < 32, -1] == -1).all() and (mem == -1).any(axis=1).mean() > 0.5


@pytest.mark.parametrize("name", SUBJECTS)
def test_noise_ceiling_vertices_and_rois(out, truth, tree, name):
    folder, _, vertices = _subject(out, name)
    nc = np.load(folder / "noise_ceiling.npy")
    hemi, index = vertices["hemi"], vertices["index"]
    written = np.where(hemi == 0, truth[f"{name}_lh_ncsnr_written"][np.where(hemi == 0, index, 0)],
                       truth[f"{name}_rh_ncsnr_written"][np.where(hemi == 1, index, 0)])
    snr2 = written.astype(np.float64) ** 2
    np.testing.assert_allclose(nc, snr2 / (snr2 + 1 / 3), rtol=1e-5)
    assert nc.min() >= 0 and nc.max() <= 1
    # selection = the Algonauts mask, lh first, ascending within hemisphere
    for h, hemi_name in enumerate(("lh", "rh")):
        mask = np.load(tree.algonauts / name / "roi_masks" / f"{hemi_name}.all-vertices_fsaverage_space.npy")
        np.testing.assert_array_equal(index[hemi == h], np.flatnonzero(mask))
        coords, _ = fs.read_geometry(str(tree.nsd / f"nsddata/freesurfer/fsaverage/surf/{hemi_name}.sphere"))
        np.testing.assert_allclose(vertices["sphere"][hemi == h], coords[index[hemi == h]], rtol=1e-6)
        faces_roi = np.load(tree.algonauts / name / "roi_masks" / f"{hemi_name}.floc-faces_fsaverage_space.npy")
        with np.load(folder / "rois.npz") as rois:
            np.testing.assert_array_equal(rois["floc-faces"][hemi == h], faces_roi[index[hemi == h]])
            names = rois["floc-faces__names"]
            assert names[0] == "Unknown"
            assert rois["nsdgeneral"].max() == 1 and "early" in rois["streams__names"].tolist()
    assert np.all(np.diff(hemi) >= 0) and vertices["challenge"].all()
    assert np.load(folder / "vertex_valid.npy").all()  # the planted NaN vertices are outside the mask


def test_splits_image_disjoint_and_predict_last_sessions(out, tree):
    by_split: dict[int, set] = {0: set(), 1: set(), 2: set()}
    for name in SUBJECTS:
        _, trials, _ = _subject(out, name)
        split, session, ids = trials["split"], trials["session"], trials["nsd_id"]
        n_sessions = session.max()
        np.testing.assert_array_equal(split == 3, session > n_sessions - 3)
        for code in by_split:
            by_split[code] |= set(ids[split == code].tolist())
        test_ids = alg.list_images(tree.algonauts / name / "test_split/test_images", "test").nsd_ids
        shown = np.isin(ids, test_ids)
        assert shown.any() and (split[shown] == 3).all()
    assert not (by_split[0] & by_split[1]) and not (by_split[0] & by_split[2]) and not (by_split[1] & by_split[2])
    n = sum(len(v) for v in by_split.values())
    assert abs(len(by_split[0]) - 0.94 * n) <= 1 and len(by_split[1]) > 0 and len(by_split[2]) > 0


@pytest.mark.parametrize("name", SUBJECTS)
def test_fmri_zscored_and_matches_algonauts_training_fmri(out, tree, name):
    folder, trials, vertices = _subject(out, name)
    fmri = np.load(folder / "fmri.npy", mmap_mode="r")
    assert fmri.dtype == np.float16 and fmri.shape == (trials["session"].size, vertices["hemi"].size)
    for s in np.unique(trials["session"]):
        block = np.asarray(fmri[trials["session"] == s], dtype=np.float64)
        np.testing.assert_allclose(block.mean(0), 0, atol=2e-3)
        np.testing.assert_allclose(block.std(0), 1, atol=2e-3)
    # Algonauts training fmri = mean over repeats (non-held-out sessions) of the z-scored betas
    listing = alg.list_images(tree.algonauts / name / "training_split/training_images", "train")
    ref = np.concatenate([np.load(tree.algonauts / name / f"training_split/training_fmri/{h}_training_fmri.npy")
                          for h in ("lh", "rh")], axis=1)
    early = trials["split"] < 3
    order = np.argsort(trials["nsd_id"][early], kind="stable")
    ids_sorted = trials["nsd_id"][early][order]
    rows = np.flatnonzero(early)[order]
    starts = np.searchsorted(ids_sorted, listing.nsd_ids)
    stops = np.searchsorted(ids_sorted, listing.nsd_ids, side="right")
    mine = np.stack([np.asarray(fmri[np.sort(rows[a:b])], np.float32).mean(0) for a, b in zip(starts, stops)])
    np.testing.assert_allclose(mine[:, vertices["challenge"]], ref, atol=5e-3)


def test_images_are_the_stimulus_rows(out, tree):
    images = np.load(out / "images/images.npy", mmap_mode="r")
    ids = np.load(out / "images/nsd_ids.npy")
    assert images.dtype == np.uint8 and images.shape == (ids.size, 32, 32, 3)
    with h5py.File(tree.nsd / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5", "r") as f:
        pick = np.sort(np.random.default_rng(0).choice(ids.size, 50, replace=False))
        np.testing.assert_array_equal(images[pick], f["imgBrick"][ids[pick].tolist()])


@pytest.mark.parametrize("name", SUBJECTS)
def test_behaviour_links_use_full_history(out, tree, name):
    folder, trials, _ = _subject(out, name)
    beh = np.load(folder / "behaviour.npy")
    assert beh.shape == (trials["session"].size, 35) and beh.dtype == np.float32 and np.isfinite(beh).all()
    prev, _, nxt = showing_links(trials["nsd_id"])
    has_prev, has_next = prev >= 0, nxt >= 0
    np.testing.assert_array_equal(beh[has_prev, 21:28], beh[prev[has_prev]][:, list(CARRIED)])
    np.testing.assert_array_equal(beh[has_next, 28:35], beh[nxt[has_next]][:, list(CARRIED)])
    assert (beh[~has_prev, 21:28] == 0).all() and (beh[~has_next, 28:35] == 0).all()
    # a test-split trial links to showings in other splits (no subsetting before the lookup)
    crossing = has_prev & (trials["split"] != trials["split"][np.maximum(prev, 0)])
    assert crossing.any()
    resp = read_responses(tree.nsd / f"nsddata/ppdata/{name}/behav/responses.tsv")
    np.testing.assert_allclose(beh[:, 19], (resp["RUN"] - 6) / 12, rtol=1e-6)
    button = resp["BUTTON"].to_numpy()
    ok = ~np.isnan(button)
    np.testing.assert_array_equal(beh[ok, 2], button[ok])
    np.testing.assert_allclose(beh[~ok, 2], button[ok].mean(), rtol=1e-5)


def test_manifest_checksums_and_surfaces(out):
    manifest = json.loads((out / "manifest.json").read_text())
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == files and not (out / WORK_DIR).exists()
    for rel, entry in manifest["files"].items():
        assert sha256_file(out / rel) == entry["sha256"]
    assert len(manifest["behaviour"]["columns"]) == 35
    assert manifest["subjects"]["subj01"]["predict_sessions"] == [2, 3, 4]
    with np.load(out / "surfaces/fsaverage.npz") as surf:
        for hemi in ("lh", "rh"):
            for kind in ("sphere", "inflated", "white", "flat"):
                coords, faces = surf[f"{hemi}_{kind}_coords"], surf[f"{hemi}_{kind}_faces"]
                assert coords.shape == (2562, 3) and faces.dtype == np.int32 and faces.max() < 2562
            assert surf[f"{hemi}_sulc"].shape == (2562,)
            flat, faces = surf[f"{hemi}_flat_coords"], surf[f"{hemi}_flat_faces"]
            assert np.isfinite(flat[faces]).all()


def test_second_run_is_noop(out, tree):
    before = {p: (p.stat().st_mtime_ns, sha256_file(p)) for p in out.rglob("*") if p.is_file()}
    assert prepare(tree.nsd, tree.algonauts, out, **PREPARE_KW) == out
    after = {p: (p.stat().st_mtime_ns, sha256_file(p)) for p in out.rglob("*") if p.is_file()}
    assert before == after and is_finished(out, verify=True)


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from brainnet.data.prep import prepare
    done = []
    def hook(subject, session):
        done.append((subject, session))
        if len(done) == int(sys.argv[4]):
            os.kill(os.getpid(), signal.SIGKILL)
    prepare(sys.argv[1], sys.argv[2], sys.argv[3], image_size=32, progress=False, on_session_done=hook)
""")


def test_killed_prepare_resumes_to_identical_output(out, tree, tmp_path):
    target = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for n_sessions in (2, 1):  # killed in subj01, then again after one more session (resumed run)
        proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(tree.nsd), str(tree.algonauts),
                               str(target), str(n_sessions)], env=env, capture_output=True, text=True)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        assert not (target / "manifest.json").exists() and (target / WORK_DIR).is_dir()
        markers = sorted(p.name for p in (target / WORK_DIR).rglob("session_*.npy"))
        assert len(markers) == (2 if n_sessions == 2 else 3)
    prepare(tree.nsd, tree.algonauts, target, **PREPARE_KW)
    assert output_digests(target) == output_digests(out)


def test_nc_threshold_extends_the_mask(tree, truth, tmp_path):
    target = prepare(tree.nsd, tree.algonauts, tmp_path / "thr", subjects=["subj01"], nc_threshold=0.15,
                     progress=False, image_size=16)
    manifest = json.loads((target / "manifest.json").read_text())
    info = manifest["subjects"]["subj01"]
    _, _, vertices = _subject(target, "subj01")
    nc = np.load(target / "subj01/noise_ceiling.npy")
    for h, hemi in enumerate(("lh", "rh")):
        snr2 = truth[f"subj01_{hemi}_ncsnr_written"].astype(np.float64) ** 2
        planted_nc = np.nan_to_num(snr2 / (snr2 + 1 / 3))
        mask = np.load(tree.algonauts / "subj01/roi_masks" / f"{hemi}.all-vertices_fsaverage_space.npy")
        want = np.flatnonzero(mask.astype(bool) | (planted_nc >= 0.15))
        np.testing.assert_array_equal(vertices["index"][vertices["hemi"] == h], want)
    added = ~vertices["challenge"]
    assert added.sum() > 0 and info["n_vertices"] == vertices["hemi"].size and info["nc_threshold_used"] == 0.15
    assert nc[added].min() >= 0.15 - 1e-6
    assert np.load(target / "subj01/vertex_valid.npy").all()  # NaN vertices: NC 0, never added
    assert np.load(target / "images/images.npy", mmap_mode="r").shape[1:] == (16, 16, 3)
    with np.load(target / "subj01/trials.npz") as t:
        assert (t["split"] == 3).sum() == 2250


# ru_maxrss survives fork + exec on Linux (the child starts at the parent's high-water mark), so
# the peak is also read from /proc/self/status (VmHWM belongs to the new process image).
_RSS_SCRIPT = textwrap.dedent("""
    import json, re, resource, sys
    def peak_kib():
        try:
            status = open("/proc/self/status").read()
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from brainnet.data.prep import prepare
    base = peak_kib()
    prepare(sys.argv[1], sys.argv[2], sys.argv[3], image_size=64, progress=False)
    print(json.dumps({"imports_kib": base, "peak_kib": peak_kib(),
                      "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
""")


@pytest.mark.slow
def test_peak_memory_default_preset(tmp_path_factory, tmp_path):
    """Peak RSS of prepare on the default preset stays far below the betas it streams."""
    tree = mini_tree(tmp_path_factory, "default")
    betas_bytes = sum(p.stat().st_size for p in tree.nsd.rglob("*.betas_session*.mgh"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(tree.nsd), str(tree.algonauts),
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, check=True)
    rss = json.loads(proc.stdout.strip().splitlines()[-1])
    grown = (rss["peak_kib"] - rss["imports_kib"]) * 1024
    print(f"prepare peak RSS {rss['peak_kib'] / 1024:.0f} MiB (imports {rss['imports_kib'] / 1024:.0f} MiB), "
          f"betas streamed {betas_bytes / 2**20:.0f} MiB")
    assert grown < betas_bytes / 4


def test_prepare_does_not_import_torch(tree, tmp_path):
    """A whole prepare runs without torch: importing it costs ~0.46 GB of RSS (torch 2.14 with its CUDA
    libraries), as much as prepare's own peak on nsd-mini's algonauts preset (issue 11)."""
    code = ("import sys; from brainnet.data.prep import prepare; "
            "prepare(sys.argv[1], sys.argv[2], sys.argv[3], image_size=32, progress=False); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:3])")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code, str(tree.nsd), str(tree.algonauts), str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"
