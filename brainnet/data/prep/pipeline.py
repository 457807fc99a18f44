"""``prepare``: NSD + Algonauts trees (or the Algonauts 2023 release alone) -> one prepared dataset directory.

The layout of the output is documented in ``docs/prepared-dataset.md``. With ``nsd_dir`` the
dataset is trial-level (one row per trial, every input); without it, image-level (one row per
image of the release, no trial order / behaviour / noise ceiling; see
:mod:`brainnet.data.prep.plan_algonauts`). Pipeline order:

1. :func:`brainnet.data.prep.plan.make_plan` (or :func:`~brainnet.data.prep.plan_algonauts.make_image_plan`)
   reads and cross-checks every small input (design, responses, MGH headers, masks, labels,
   surfaces, image listings). A bad input raises :class:`brainnet.errors.DataFormatError` here,
   before anything is written.
2. If ``out_dir`` already holds a finished dataset with the same input fingerprint (parameters +
   path/size/mtime of every source file) nothing is done.
3. Outputs are written into ``out_dir/.prepare-work/stage``: small tables, the fMRI matrix of each
   subject streamed session by session (resumable: one marker per finished session), the images
   in resumable chunks, the surfaces.
4. The staged files are moved into ``out_dir``, their sha256 recorded, ``manifest.json`` written
   last (its presence means "finished"), the work folder removed.

An interrupted run (crash, kill) leaves only the work folder; rerunning with the same inputs
resumes and produces byte-identical files. A :class:`DataFormatError` met while streaming removes
the work folder (and ``out_dir`` if this run created it) before it propagates. The source trees
are only read.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np

from brainnet.data.io import npy_header, remove_tmp_files, save_json, save_text, sha256_file
from brainnet.data.layout import (
    BEHAVIOUR_COLUMNS,
    BEHAVIOUR_GROUPS,
    FORMAT_NAME,
    FORMAT_VERSION,
    INPUTS,
    MANIFEST,
    SPLIT_CODES,
    VERTEX_VALID,
)
from brainnet.data.prep.config import PrepareConfig
from brainnet.data.prep.lock import prepare_lock
from brainnet.data.prep.plan import DatasetPlan, make_plan
from brainnet.data.prep.plan_algonauts import make_image_plan
from brainnet.data.prep.write import (
    SessionHook,
    write_images,
    write_subject_fmri,
    write_subject_tables,
    write_surfaces,
)
from brainnet.data.prep.write_algonauts import image_subject_counts, write_image_fmri
from brainnet.errors import DataFormatError

log = logging.getLogger(__name__)

WORK_DIR = ".prepare-work"
_VERSIONED = ("numpy", "scipy", "pandas", "nibabel", "h5py", "pillow", "brainnet")


def prepare(nsd_dir: str | Path | None = None, alg_dir: str | Path | None = None, out_dir: str | Path | None = None,
            subjects=None, space: str = "fsaverage", beta_version: str = "betas_fithrf_GLMdenoise_RR",
            nc_threshold: float | str | None = None, image_size: int = 224, split_seed: int = 0,
            split_fractions: tuple[float, float, float] = (0.94, 0.04, 0.02), *,
            fsaverage_dir: str | Path | None = None, ncsnr_dir: str | Path | None = None,
            config: PrepareConfig | None = None, progress: bool = True, verify: bool = False,
            on_session_done: SessionHook | None = None, lock_timeout: float | None = None, **options) -> Path:
    """Build (or resume, or confirm) the prepared dataset in ``out_dir``; returns its path.

    Args:
        nsd_dir: root of the NSD tree, or None: an image-level dataset from the Algonauts 2023
            release alone (one row per image; no trial order, behaviour or noise ceiling).
        alg_dir: root of the Algonauts 2023 tree (subj01..). out_dir: the dataset folder.
        subjects ... split_fractions, **options: fields of :class:`PrepareConfig`
            (``image_source``, ``n_heldout_sessions``, ``algonauts_rois``, ...).
        fsaverage_dir: without ``nsd_dir``: a FreeSurfer fsaverage folder for the surfaces and
            sphere coordinates (None: nilearn's fetcher when online). Ignored with ``nsd_dir``
            (NSD's own copy is used).
        ncsnr_dir: without ``nsd_dir``: an NSD root holding (at least) the subjects' fsaverage
            ``{lh,rh}.ncsnr.mgh`` of ``beta_version``, for the noise ceiling the release hides.
        config: a ready :class:`PrepareConfig`; when given, the keyword fields are ignored.
        progress: show tqdm bars.
        verify: for an existing finished dataset, re-hash every file instead of checking sizes.
        on_session_done: called as ``hook(subject, session)`` after each committed session (image
            level: after each committed chunk of ``image_chunk`` fMRI rows, numbered from 1).
        lock_timeout: seconds to wait for another ``prepare`` writing into ``out_dir`` (None: until
            it is done; 0: refuse at once with :class:`~brainnet.errors.LockedError`).

    Raises:
        DataFormatError: a source file is missing or malformed (the message names it), or (image
            level) no fsaverage surfaces can be had offline (the message says what to provide).
    """
    if alg_dir is None or out_dir is None:
        raise TypeError("prepare() needs alg_dir and out_dir")
    cfg = config or PrepareConfig(
        subjects=subjects, space=space, beta_version=beta_version, nc_threshold=nc_threshold,
        image_size=image_size, split_seed=split_seed, split_fractions=split_fractions, **options)
    out = Path(out_dir).resolve()
    for src in [Path(p).resolve() for p in (nsd_dir, alg_dir) if p is not None]:
        if out == src or src in out.parents or out in src.parents:
            raise ValueError(f"out_dir {out} must lie outside the source tree {src} (sources are never modified)")
    if nsd_dir is not None:
        plan = make_plan(nsd_dir, alg_dir, cfg)
    else:
        plan = make_image_plan(alg_dir, cfg, fsaverage_dir, ncsnr_dir)
    fingerprint = plan.fingerprint()
    if is_finished(out, fingerprint, verify=verify):
        log.info("%s already holds this dataset (fingerprint %s): nothing to do", out, fingerprint[:12])
        return out
    with prepare_lock(out, lock_timeout):  # a second prepare into out_dir waits, then finds it finished
        if is_finished(out, fingerprint, verify=verify):
            return out
        _prepare_locked(plan, out, fingerprint, progress, on_session_done)
    return out


def _prepare_locked(plan: DatasetPlan, out: Path, fingerprint: str, progress: bool,
                    on_session_done: SessionHook | None) -> None:
    log.info("preparing %s (%d subjects, %d images, %s level) into %s", ", ".join(s.name for s in plan.subjects),
             len(plan.subjects), plan.image_ids.size, plan.level, out)
    created = not out.exists()
    work = out / WORK_DIR
    try:
        _start(out, work, fingerprint)
        _build(plan, out, work, fingerprint, progress, on_session_done)
    except DataFormatError as exc:
        log.debug("bad input while streaming (%s): removing %s", exc, work)
        shutil.rmtree(work, ignore_errors=True)
        remove_tmp_files(out)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def is_finished(out: Path, fingerprint: str | None = None, verify: bool = False) -> bool:
    """True when ``out`` holds a finished dataset (manifest present, every listed file there
    with its recorded size, or recorded sha256 when ``verify``), of ``fingerprint`` if given."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if fingerprint is not None and manifest.get("fingerprint") != fingerprint:
        return False
    for rel, entry in manifest.get("files", {}).items():
        file = Path(out) / rel
        if not file.is_file() or file.stat().st_size != entry["bytes"]:
            return False
        if verify and sha256_file(file) != entry["sha256"]:
            return False
    return True


def _start(out: Path, work: Path, fingerprint: str) -> None:
    """Retire an old dataset in ``out`` and open (or reset) the work folder for ``fingerprint``."""
    out.mkdir(parents=True, exist_ok=True)
    old = out / MANIFEST
    if old.is_file():
        try:
            listed = json.loads(old.read_text()).get("files", {})
        except (OSError, ValueError):
            listed = {}
        log.info("%s holds a dataset of other inputs or settings: replacing its %d files", out, len(listed))
        old.unlink()
        for rel in listed:
            (out / rel).unlink(missing_ok=True)
    stamp = work / "fingerprint.txt"
    if work.is_dir() and (not stamp.is_file() or stamp.read_text().strip() != fingerprint):
        log.info("discarding %s: an interrupted run of other inputs", work)
        shutil.rmtree(work)
    elif work.is_dir():
        log.info("resuming the interrupted run in %s", work)
    work.mkdir(parents=True, exist_ok=True)
    remove_tmp_files(work)
    save_text(stamp, fingerprint + "\n")


def _build(plan: DatasetPlan, out: Path, work: Path, fingerprint: str, progress: bool,
           on_session_done: SessionHook | None) -> None:
    stage = work / "stage"
    write_surfaces(plan, stage)
    for subject in plan.subjects:
        write_subject_tables(subject, stage)
        if plan.level == "image":
            write_image_fmri(subject, stage, work, plan.config.image_chunk, progress=progress,
                             on_chunk_done=on_session_done)
        else:
            write_subject_fmri(subject, stage, work, progress=progress, on_session_done=on_session_done)
    write_images(plan, stage, work, progress=progress)
    files = {}
    for path in sorted(p for p in stage.rglob("*") if p.is_file()):
        rel = path.relative_to(stage).as_posix()
        files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        if path.suffix == ".npy":
            header = npy_header(path)
            files[rel].update(dtype=header.dtype.str, shape=list(header.shape))
    manifest = _manifest(plan, fingerprint, files, stage)
    for rel in files:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).replace(target)
    save_json(out / MANIFEST, manifest)
    shutil.rmtree(work)
    log.info("prepared %s: %d files, %.1f MB", out, len(files), sum(e["bytes"] for e in files.values()) / 1e6)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def _mini_root(alg_root: Path) -> str | None:
    """The nsd-mini folder (holding ``ground_truth.npz``) whose Algonauts tree ``alg_root`` is, else None."""
    from brainnet.data.mini.config import MiniNSDPaths

    paths = MiniNSDPaths.under(alg_root.parent)
    return str(paths.root) if paths.algonauts == alg_root and paths.ground_truth.is_file() else None


def _trial_counts(plan: DatasetPlan, s, stage: Path) -> dict:
    cfg = plan.config
    split = s.trials["split"]
    valid = np.load(stage / s.name / VERTEX_VALID)
    n_sessions = len(s.betas)
    return {
        "n_trials": s.n_trials,
        "n_vertices": s.n_vertices,
        "n_vertices_per_hemi": [int((s.hemi == 0).sum()), int((s.hemi == 1).sum())],
        "n_voxels": int(s.n_vertices - s.n_surface),
        "mesh_vertices_per_hemi": list(s.mesh_sizes),
        "n_challenge_vertices": int(s.challenge.sum()),
        "n_valid_vertices": int(valid.sum()),
        "n_sessions": n_sessions,
        "predict_sessions": list(range(n_sessions - cfg.n_heldout_sessions + 1, n_sessions + 1)),
        "nc_threshold_used": s.nc_threshold_used,
        "mean_noise_ceiling_challenge": float(s.noise_ceiling[s.challenge].mean()) if s.challenge.any() else None,
        "split_trials": {k: int((split == c).sum()) for k, c in SPLIT_CODES.items()},
        "split_images": {k: int(np.unique(s.trials["nsd_id"][split == c]).size) for k, c in SPLIT_CODES.items()},
        "algonauts_images": {"train": s.n_train_images, "test": s.n_test_images},
    }


def _manifest(plan: DatasetPlan, fingerprint: str, files: dict, stage: Path) -> dict:
    cfg = plan.config
    image = plan.level == "image"
    subjects = {s.name: image_subject_counts(s, stage) if image else _trial_counts(plan, s, stage)
                for s in plan.subjects}
    inputs = {name: not image for name in INPUTS}
    inputs["noise_ceiling"] = all(s.noise_ceiling is not None for s in plan.subjects)
    out = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "fingerprint": fingerprint,
        "level": plan.level,
        "inputs": inputs,
        "sources": {"nsd_dir": None if plan.nsd_root is None else str(plan.nsd_root),
                    "algonauts_dir": str(plan.alg_root), "fsaverage": plan.fsaverage,
                    "image_source": plan.image_source, "nsd_mini_root": _mini_root(plan.alg_root)},
        "parameters": cfg.to_json(),
        "versions": _versions(),
        "images": {"n_images": int(plan.image_ids.size), "size": cfg.image_size, "resample": "bicubic"},
        "behaviour": {"columns": list(BEHAVIOUR_COLUMNS), "groups": {k: list(v) for k, v in BEHAVIOUR_GROUPS.items()}},
        "split_codes": dict(SPLIT_CODES),
        "subjects": subjects,
        "files": files,
    }
    if image:
        del out["behaviour"]
    return out
