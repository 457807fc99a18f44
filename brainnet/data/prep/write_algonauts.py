"""Writers of an image-level dataset (planned by :mod:`brainnet.data.prep.plan_algonauts`).

Only the fMRI differs from the trial level: the release's rows are copied as they are (already
z-scored per session and averaged over repeats), not z-scored again. The tables, images and
surfaces go through :mod:`brainnet.data.prep.write`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from brainnet.data import layout as L
from brainnet.data.formats import algonauts as alg
from brainnet.data.io import NpyRowWriter, save_npy
from brainnet.data.prep.plan_algonauts import ImageSubjectPlan
from brainnet.data.prep.write import SessionHook


def write_image_fmri(plan: ImageSubjectPlan, stage: Path, work: Path, chunk: int, progress: bool = True,
                     on_chunk_done: SessionHook | None = None) -> None:
    """Copy one subject's release fMRI into ``stage/<subject>/fmri.npy`` (float16 [n_rows, V]).

    Rows 0..n_train-1 are the release's rows (lh columns then rh columns, NaN -> 0, cast to
    float16); the test-image rows stay 0. Resumable: ``chunk`` rows at a time, each finished chunk
    leaving ``work/<subject>/rows_NNNNN.npy`` (float32 [3, V]: any NaN, min, max of its stored
    rows) and calling ``on_chunk_done(subject, chunk number from 1)``. At the end
    ``vertex_valid.npy`` = no NaN and not the same value in every training row.
    """
    final = stage / plan.name / L.FMRI
    valid_path = stage / plan.name / L.VERTEX_VALID
    markers = work / plan.name
    markers.mkdir(parents=True, exist_ok=True)
    partial = markers / "fmri.partial.npy"
    n_train = plan.n_train_images
    blocks = [(a, min(a + chunk, n_train)) for a in range(0, n_train, chunk)]
    marker = [markers / f"rows_{i:05d}.npy" for i in range(len(blocks))]
    if final.is_file() and valid_path.is_file() and all(m.is_file() for m in marker):
        return
    n_lh, n_rh = plan.hemi_columns
    lh = alg.read_training_fmri(plan.fmri[0], n_images=n_train, n_vertices=n_lh)
    rh = alg.read_training_fmri(plan.fmri[1], n_images=n_train, n_vertices=n_rh)
    writer = NpyRowWriter(partial, (plan.n_trials, plan.n_vertices), np.float16)
    try:
        if not writer.resumed:
            for m in marker:
                m.unlink(missing_ok=True)
        todo = [i for i in range(len(blocks)) if not marker[i].is_file()]
        for i in tqdm(todo, desc=f"{plan.name} fmri", unit="chunk", disable=not progress or not todo):
            a, b = blocks[i]
            rows = np.concatenate([np.asarray(lh[a:b], np.float32), np.asarray(rh[a:b], np.float32)], axis=1)
            has_nan = np.isnan(rows).any(axis=0)
            stored = np.nan_to_num(rows, nan=0.0).astype(np.float16)
            writer.write_rows(a, stored)
            writer.flush()
            save_npy(marker[i], np.stack([has_nan.astype(np.float32), stored.min(axis=0).astype(np.float32),
                                          stored.max(axis=0).astype(np.float32)]))
            if on_chunk_done is not None:
                on_chunk_done(plan.name, i + 1)
    finally:
        writer.close()
    stats = [np.load(m) for m in marker]
    has_nan = np.any([s[0] > 0 for s in stats], axis=0)
    low = np.min([s[1] for s in stats], axis=0)
    high = np.max([s[2] for s in stats], axis=0)
    save_npy(valid_path, ~has_nan & (high > low))
    final.parent.mkdir(parents=True, exist_ok=True)
    partial.replace(final)


def image_subject_counts(s: ImageSubjectPlan, stage: Path) -> dict:
    """The manifest's ``subjects`` entry of one image-level subject."""
    split = s.trials["split"]
    valid = np.load(stage / s.name / L.VERTEX_VALID)
    return {
        "n_trials": s.n_trials,
        "n_vertices": s.n_vertices,
        "n_vertices_per_hemi": list(s.hemi_columns),
        "mesh_vertices_per_hemi": list(s.mesh_sizes),
        "n_challenge_vertices": int(s.challenge.sum()),
        "n_valid_vertices": int(valid.sum()),
        "n_sessions": 0,
        "predict_sessions": [],
        "nc_threshold_used": None,
        "mean_noise_ceiling_challenge": None,
        "split_trials": {k: int((split == c).sum()) for k, c in L.SPLIT_CODES.items()},
        "split_images": {k: int(np.unique(s.trials["nsd_id"][split == c]).size) for k, c in L.SPLIT_CODES.items()},
        "algonauts_images": {"train": s.n_train_images, "test": s.n_test_images},
    }
