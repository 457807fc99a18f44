"""nsd-mini: a synthetic NSD tree and Algonauts 2023 tree with planted ground truth.

``make_mini_nsd(out_dir, config)`` writes, in the real on-disk formats (see the data-formats
spec and the readers in this package)::

    out_dir/nsd/...                  NSD tree (expdesign, stim info, responses, betas, ncsnr,
                                     fsaverage surfaces and labels, stimulus HDF5)
    out_dir/algonauts2023/subjXX/... Algonauts tree (training fMRI, train/test PNGs, ROI masks)
    out_dir/ground_truth.npz         planted truth (keys: brainnet.data.mini.truth.GROUND_TRUTH_KEYS)
    out_dir/ground_truth.json        human-readable description, config and measured numbers

The brain model is described in :mod:`brainnet.data.mini.cortex` and
:mod:`brainnet.data.mini.response`; the design and behaviour in
:mod:`brainnet.data.mini.design`. Everything is a deterministic function of the config: two
runs with the same config give byte-identical files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .config import TRIALS_PER_SESSION, MiniNSDConfig, MiniNSDPaths
from .cortex import FLOC_CLASS_OF_CATEGORY, ROI_NAMES, plant_cortex
from .design import ANSWER_COLUMNS, make_design, simulate_behaviour, stim_info_table, trial_table
from .mesh import HEMIS, load_mesh, write_surfaces
from .response import answer_drive, memory_lag_profile, memory_trace
from .scenes import CATEGORIES, category_maps, draw_scene, energy_map
from .scratch import RowStore, block_rows, index_blocks
from .surface import SubjectTrials, write_hemisphere
from .truth import GROUND_TRUTH_KEYS
from .volume import hippocampus_lag_profile, write_subject_volume
from .writers import write_ctab, write_hdf5_image_blocks, write_mat, write_mgz, write_npy, write_png

__all__ = ["MiniNSDConfig", "MiniNSDPaths", "make_mini_nsd"]

BETAS_DIR = "betas_fithrf_GLMdenoise_RR"
ALGONAUTS_CLASSES = ("prf-visualrois", "floc-bodies", "floc-faces", "floc-places", "floc-words", "streams")


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *[int(k) for k in keys]])


def _progress(iterable, enabled: bool, **kw):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kw)


def _draw_pool(cfg: MiniNSDConfig, images: RowStore, progress: bool):
    """Draw all pool images into ``images`` (uint8 (P, S * S * 3), one flattened (S, S, 3) image per row)
    and return their feature maps.

    Returns energy float32 (P, G, G), categories float32 (P, 4, G, G), objects float32
    (P, max_objects, 4): (category, cx, cy, size) per drawn object, NaN padded.
    """
    P, S, G = cfg.n_pool_images, cfg.image_size, cfg.feature_grid
    energy = np.empty((P, G, G), dtype=np.float32)
    cats = np.empty((P, 4, G, G), dtype=np.float32)
    objects = np.full((P, cfg.objects_per_image[1], 4), np.nan, dtype=np.float32)
    step = block_rows(S * S * 3, itemsize=1)
    block = np.empty((min(P, step), S * S * 3), dtype=np.uint8)
    for i in _progress(range(P), progress, desc="nsd-mini images"):
        img, objs = draw_scene(_rng(cfg.seed, 1, i), S, n_objects=tuple(cfg.objects_per_image))
        block[i % step] = img.reshape(-1)
        if i % step == step - 1 or i == P - 1:
            start = i - i % step
            images.write_rows(slice(start, i + 1), block[: i + 1 - start])
        energy[i] = energy_map(img, G)
        cats[i] = category_maps(objs, G, subsample=4)
        for j, o in enumerate(objs):
            objects[i, j] = (o.category, o.cx, o.cy, o.size)
    return energy, cats, objects


def make_mini_nsd(out_dir, config: MiniNSDConfig | None = None, progress: bool = True) -> MiniNSDPaths:
    """Generate nsd-mini under ``out_dir`` (created if needed).

    A previous nsd-mini in ``out_dir`` (recognised by its ground_truth.json) is replaced; other
    content in ``out_dir/nsd`` or ``out_dir/algonauts2023`` raises FileExistsError.

    Memory follows one session (n_vertices x 750), not a subject: the subject's accumulators and the
    pool images live in scratch files under ``out_dir/.nsd-mini-scratch`` (removed at the end; at
    the ``algonauts`` preset with 2 subjects up to ~5 GB of disk besides the tree).

    Args:
        out_dir: output directory.
        config: the dataset parameters (``MiniNSDConfig()`` when None).
        progress: show tqdm progress bars.

    Returns:
        The paths written (:class:`MiniNSDPaths`).
    """
    cfg = MiniNSDConfig() if config is None else config
    if not isinstance(cfg, MiniNSDConfig):
        raise TypeError(f"config must be a MiniNSDConfig, got {type(cfg).__name__}")
    paths = MiniNSDPaths.under(out_dir)
    _clear_previous(paths)
    scratch = paths.root / _SCRATCH  # the run's large intermediate arrays (see brainnet.data.mini.scratch)
    scratch.mkdir(parents=True)
    try:
        _generate(cfg, paths, scratch, progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return paths


def _generate(cfg: MiniNSDConfig, paths: MiniNSDPaths, scratch: Path, progress: bool) -> None:
    nsd = paths.nsd
    truth: dict[str, np.ndarray] = {}
    report: dict = {}

    # ---- design, stimuli ------------------------------------------------------------------
    design = make_design(cfg, _rng(cfg.seed, 0))
    exp_dir = nsd / "nsddata" / "experiments" / "nsd"
    write_mat(exp_dir / "nsd_expdesign.mat", {
        "masterordering": design.masterordering[None, :].astype(np.int32),
        "subjectim": design.subjectim.astype(np.int32),
        "sharedix": design.sharedix[None, :].astype(np.int32),
        "stimpattern": design.stimpattern.astype(np.uint8),
        "basiccnt": design.basiccnt.astype(np.int32),
    })
    stim_info_table(cfg, design, _rng(cfg.seed, 2)).to_csv(exp_dir / "nsd_stim_info_merged.csv")

    S = cfg.image_size
    images = RowStore((cfg.n_pool_images, S * S * 3), np.uint8, scratch / "images.u8")
    energy, cats, objects = _draw_pool(cfg, images, progress)
    write_hdf5_image_blocks(nsd / "nsddata_stimuli" / "stimuli" / "nsd" / "nsd_stimuli.hdf5",
                            (cfg.n_pool_images, S, S, 3), (b.reshape(-1, S, S, 3) for b in images.row_blocks()))
    coverage = cats.mean(axis=(2, 3))  # (P, 4)
    animacy = coverage[:, 0] + coverage[:, 1]
    memory_feature = ((animacy - animacy.mean()) / animacy.std()).astype(np.float32)
    profile = memory_lag_profile()
    truth.update(memory_lag_profile=profile, memory_feature=memory_feature, image_categories=coverage,
                 image_objects=objects)
    if cfg.volume_shape is not None:
        truth["hippocampus_lag_profile"] = hippocampus_lag_profile()

    # ---- cortex and surfaces -----------------------------------------------------------------
    fs_dir = nsd / "nsddata" / "freesurfer" / "fsaverage"
    cortex, n_vert = {}, {}
    for h_i, hemi in enumerate(HEMIS):
        mesh = load_mesh(cfg.mesh, hemi)
        write_surfaces(fs_dir / "surf", hemi, mesh)
        cx = plant_cortex(mesh["sphere"].coords, hemi, cfg.mask_fraction, _rng(cfg.seed, 3, h_i))
        cortex[hemi], n_vert[hemi] = cx, mesh["sphere"].n_vertices
        col = lambda a: np.asarray(a, dtype=np.float32).reshape(-1, 1, 1, 1)  # noqa: E731
        write_mgz(fs_dir / "label" / f"{hemi}.nsdgeneral.mgz", col(cx.nsdgeneral))
        write_mgz(fs_dir / "label" / f"{hemi}.streams.mgz", col(cx.labels["streams"]))
        for key in ("nsdgeneral", "challenge", "rf_x", "rf_y", "rf_size", "hierarchy", "kind",
                    "category_mix", "category_weights"):
            truth[f"{hemi}_{'mask' if key == 'nsdgeneral' else key}"] = getattr(cx, key)
    write_ctab(fs_dir / "label" / "nsdgeneral.mgz.ctab", {0: "Unknown", 1: "nsdgeneral"})
    write_ctab(fs_dir / "label" / "streams.mgz.ctab", _names("streams"), messy=True)

    # ---- subjects (the accumulators of a subject's sessions live in scratch files) ----------------
    report["subjects"] = {}
    for s, n_sess in enumerate(cfg.sessions_per_subject):
        subj = f"subj{s + 1:02d}"
        report["subjects"][subj] = _make_subject(
            cfg, s, n_sess, design, images, energy, cats, memory_feature, profile, cortex, n_vert, paths,
            truth, scratch, progress,
        )
    images.close()

    # ---- ground truth ------------------------------------------------------------------------
    with open(paths.ground_truth, "wb") as fh:
        np.savez(fh, **{k: truth[k] for k in sorted(truth)})
    desc = _describe(cfg, report)
    paths.ground_truth_json.write_text(json.dumps(desc, indent=2, sort_keys=True) + "\n")


_MARKER = "nsd-mini: synthetic NSD + Algonauts 2023 trees with planted ground truth (brainnet)"
#: Folder under out_dir for the scratch files of a run (removed at its end, or by the next run).
_SCRATCH = ".nsd-mini-scratch"


def _clear_previous(paths: MiniNSDPaths) -> None:
    """Remove an earlier nsd-mini at ``paths`` (and an interrupted run's scratch); refuse to touch anything else."""
    shutil.rmtree(paths.root / _SCRATCH, ignore_errors=True)
    trees = [p for p in (paths.nsd, paths.algonauts) if p.exists() and any(p.iterdir())]
    if not trees:
        return
    try:
        ours = json.loads(paths.ground_truth_json.read_text()).get("what") == _MARKER
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise FileExistsError(
            f"{trees[0]} exists and is not an nsd-mini written by brainnet; choose an empty "
            "out_dir or remove it first"
        )
    for p in (paths.nsd, paths.algonauts):
        if p.exists():
            shutil.rmtree(p)
    for p in (paths.ground_truth, paths.ground_truth_json):
        p.unlink(missing_ok=True)


def _names(atlas: str) -> dict:
    return {0: "Unknown", **{i + 1: n for i, n in enumerate(ROI_NAMES[atlas])}}


def _make_subject(cfg, s, n_sess, design, images, energy, cats, memory_feature, profile, cortex, n_vert,
                  paths, truth, scratch, progress) -> dict:
    """Write one subject's NSD and Algonauts files (scratch: a folder for the accumulators); return measured
    numbers."""
    subj = f"subj{s + 1:02d}"
    nsd = paths.nsd
    n_trials = n_sess * TRIALS_PER_SESSION
    held_from = n_sess - cfg.n_held_out_sessions  # 0-based first held-out session

    # behaviour
    table = trial_table(design, s, n_sess)
    beh_rng = _rng(cfg.seed, 4, s)
    resp = simulate_behaviour(table, s + 1, beh_rng, None)
    answer = answer_drive(resp)
    missing = None
    if cfg.missing_data_run and s == 0:
        missing = (int(beh_rng.integers(1, held_from + 1)), int(beh_rng.integers(1, 13)))
        sel = (resp["SESSION"] == missing[0]) & (resp["RUN"] == missing[1])
        resp.loc[sel, "MISSINGDATA"] = 1
        resp.loc[sel, list(ANSWER_COLUMNS)] = pd.NA
    behav = nsd / "nsddata" / "ppdata" / subj / "behav" / "responses.tsv"
    behav.parent.mkdir(parents=True, exist_ok=True)
    resp.to_csv(behav, sep="\t", index=False, na_rep="NaN")

    slots = design.slots(s, n_sess)
    memory = memory_trace(slots, memory_feature, profile)
    trial_ids = slots[slots >= 0]  # pool id per trial, time order
    truth[f"{subj}_slots"] = slots
    truth[f"{subj}_answer_drive"] = answer.astype(np.float32)
    truth[f"{subj}_memory_drive"] = memory.astype(np.float32)

    # images with exactly 3 showings (ncsnr), training / test images (Algonauts)
    trials = SubjectTrials.build(trial_ids, memory, answer, n_sess, held_from)
    train_ids, test_ids = trials.train_ids, trials.test_ids

    sub_factor = 1.0 if s == 0 else float(_rng(cfg.seed, 5, s).uniform(0.75, 1.0))
    out: dict = {"n_trials": n_trials, "n_sessions": n_sess, "n_train_images": int(len(train_ids)),
                 "n_test_images": int(len(test_ids)), "n_images_3_repeats": trials.n_rep3,
                 "missing_data_run": list(missing) if missing else None, "subject_snr_factor": sub_factor}
    beta_root = nsd / "nsddata_betas" / "ppdata" / subj / "fsaverage"
    alg = paths.algonauts / subj
    for h_i, hemi in enumerate(HEMIS):
        cx, V = cortex[hemi], n_vert[hemi]
        hb = write_hemisphere(
            cfg, s, h_i, hemi, cx, V, energy, cats, trials, sub_factor, beta_root,
            alg / "training_split" / "training_fmri" / f"{hemi}_training_fmri.npy", scratch,
            lambda *keys: _rng(cfg.seed, *keys), lambda it, **kw: _progress(it, progress, **kw))
        sig, nan_v, chal, ncsnr = hb.sig, hb.nan_vertices, hb.challenge, hb.ncsnr[0]
        chal_v = np.flatnonzero(chal)
        if len(cfg.beta_versions) > 1:
            truth[f"{subj}_{hemi}_ncsnr_written_b2"] = hb.ncsnr[1]
        _write_roi_masks(alg / "roi_masks", hemi, cx, chal)

        for key in ("sigma_image", "sigma_memory", "sigma_answer"):
            truth[f"{subj}_{hemi}_{key}"] = sig[key]
        truth[f"{subj}_{hemi}_ncsnr_planted"] = sig["ncsnr"]
        truth[f"{subj}_{hemi}_ncsnr_written"] = ncsnr
        truth[f"{subj}_{hemi}_nan_vertices"] = nan_v
        vis = (cx.kind == 1) & np.isfinite(ncsnr)
        planted, written = sig["ncsnr"][vis], ncsnr[vis]
        nc = 100 * ncsnr[chal_v] ** 2 / (ncsnr[chal_v] ** 2 + 1 / 3)
        out[hemi] = {
            "n_vertices": V, "n_challenge_vertices": int(len(chal_v)), "nan_vertices": nan_v.tolist(),
            "ncsnr_corr_planted_vs_written": float(np.corrcoef(planted, written)[0, 1]),
            "ncsnr_median_abs_diff": float(np.median(np.abs(planted - written))),
            "noise_ceiling_percent_p5_p50_p95": [float(x) for x in np.percentile(nc, [5, 50, 95])],
        }

    if cfg.volume_shape is not None:
        out["func1mm"] = write_subject_volume(
            cfg, s, n_sess, trial_ids, slots, energy, cats, memory_feature, trials.rep3_row, trials.n_rep3, sub_factor,
            paths, truth, lambda *keys: _rng(cfg.seed, *keys))

    # Algonauts images (ids ascending)
    S = cfg.image_size
    for folder, name, ids in (("training_split/training_images", "train", train_ids),
                              ("test_split/test_images", "test", test_ids)):
        for rows in index_blocks(len(ids), S * S * 3, itemsize=1):
            block = images.read(ids[rows]).reshape(-1, S, S, 3)
            for k, (i, img) in enumerate(zip(ids[rows], block), start=rows.start):
                write_png(alg / folder / f"{name}-{k + 1:04d}_nsd-{i:05d}.png", img)
    return out


def _write_roi_masks(roi_dir: Path, hemi: str, cx, chal: np.ndarray) -> None:
    """Algonauts roi_masks of one hemisphere (chal: bool [V], the subject's challenge mask)."""
    write_npy(roi_dir / f"{hemi}.all-vertices_fsaverage_space.npy", chal.astype(np.int64))
    for cls in ALGONAUTS_CLASSES:
        full = np.where(chal, cx.labels[cls], 0).astype(np.int64)
        write_npy(roi_dir / f"{hemi}.{cls}_fsaverage_space.npy", full)
        write_npy(roi_dir / f"{hemi}.{cls}_challenge_space.npy", full[chal])
        write_npy(roi_dir / f"mapping_{cls}.npy", _names(cls))


def _describe(cfg: MiniNSDConfig, report: dict) -> dict:
    from dataclasses import asdict

    return {
        "what": _MARKER,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "categories": list(CATEGORIES),
        "floc_class_of_category": list(FLOC_CLASS_OF_CATEGORY),
        "conventions": {
            "visual_field": "lh sees the right visual field (x >= 0), rh the left; y points down "
                            "(grid_sample, align_corners=False); dorsal cortex sees the lower field",
            "hierarchy": "0 at the occipital pole, 1 at the nsdgeneral border; energy -> category "
                         "transition around 0.45",
            "kinds": {"0": "none", "1": "visual", "2": "memory", "3": "answer"},
            "memory": "memory vertices respond to sum_k profile[k] * memory_feature(image k slots back "
                      "in the same run), blank slots and slots before the run start give 0; profile "
                      "peaks at k = 6",
            "answer": "answer vertices respond to +1 (button 2) / -1 (button 1) / 0 (no press) plus "
                      "0.6 z(log RT); in the MISSINGDATA run the brain still responds, the TSV is NaN",
            "ncsnr": "planted = image-locked sd / sd of everything else (noise, drift, memory, answer); "
                     "written = NSD formula on the generated betas",
            "sessions": "per-session offsets and linear drifts in every vertex; last "
                        f"{cfg.n_held_out_sessions} sessions held out (Algonauts test images are "
                        "the images shown only there)",
            "func1mm": "per subject a small 1 mm grid: thalamus (1-5 LGN SC Vpu DLpu DMpu) and MTL (1-10 ErC "
                       "area35 area36 PhC Sub CA1 CA2 CA3 DG HT) label volumes; LGN voxels visual (energy, small "
                       "RFs), hippocampal voxels (Sub..HT) memory voxels with hippocampus_lag_profile (peak k = "
                       "12, cortex: k = 6), other voxels noise; betas int16 = percent signal change x 300, 0 "
                       "outside the brain",
            "beta_versions": "betas_fithrf (b2) = betas_fithrf_GLMdenoise_RR (b3) plus extra trial noise",
            "mesh": "fsaverage5 = nilearn's packaged mesh; fsaverage3/4 = its nested sub-meshes; "
                    "fsaverage6 = its midpoint subdivision (new-vertex order ours)",
        },
        "ground_truth_keys": GROUND_TRUTH_KEYS,
        "measured": report,
    }
