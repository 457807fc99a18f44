"""Read and cross-check every (small) input before anything is written.

:func:`make_plan` reads the design, the responses, the MGH headers, noise ceilings, masks,
labels, surfaces and image listings of every subject, checks that they agree with each other
and returns a :class:`DatasetPlan`: everything the writers need except the betas and image
pixels, which are streamed later. A bad input therefore fails here, before any output exists.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainnet.data.formats import algonauts as alg
from brainnet.data.formats import freesurfer as fs
from brainnet.data.formats import nsd
from brainnet.data.noise_ceiling import noise_ceiling
from brainnet.data.prep.behaviour import behaviour_features
from brainnet.data.prep.config import PrepareConfig
from brainnet.data.prep.fsaverage import read_fsaverage_folder
from brainnet.data.prep.tables import assign_splits, memory_index, select_vertices, trial_table
from brainnet.errors import DataFormatError

log = logging.getLogger(__name__)

@dataclass
class SubjectPlan:
    """One subject's tables and the sources to stream.

    Attributes:
        name: ``"subj01"``.
        trials: int64 arrays [n_trials] session, run, trial, slot, nsd_id, image, and int8 split.
        memory_index: int32 [n_trials, 33].
        behaviour: float32 [n_trials, 35].
        hemi, index: int8 / int64 [V] selected vertices (lh first, ascending index).
        challenge: bool [V]; sphere: float32 [V, 3]; noise_ceiling: float32 [V].
        rois: {atlas: int16 [V], atlas + "__names": str array}.
        betas: per session (1-based order) a pair of (lh, rh) betas paths.
        session_rows: per session (start, stop) rows in the trial table.
        nc_threshold_used: NC threshold that extended the mask (None: mask only).
    """

    name: str
    trials: dict[str, np.ndarray]
    memory_index: np.ndarray
    behaviour: np.ndarray
    hemi: np.ndarray
    index: np.ndarray
    challenge: np.ndarray
    sphere: np.ndarray
    noise_ceiling: np.ndarray
    rois: dict[str, np.ndarray]
    betas: list[tuple[Path, Path]]
    session_rows: list[tuple[int, int]]
    mesh_sizes: tuple[int, int]
    nc_threshold_used: float | None
    n_train_images: int
    n_test_images: int

    @property
    def n_trials(self) -> int:
        return int(self.trials["session"].size)

    @property
    def n_vertices(self) -> int:
        return int(self.hemi.size)

    def rows_of_hemi(self, h: int) -> np.ndarray:
        """Vertex indices of hemisphere ``h`` (0 lh, 1 rh) in selection order: int64 [V_h]."""
        return self.index[self.hemi == h]


@dataclass
class DatasetPlan:
    """All subjects plus the dataset-wide parts (images, surfaces) and the input fingerprint.

    ``level`` "trial" (from the NSD tree: :class:`SubjectPlan` subjects) or "image" (from the
    Algonauts release alone: :class:`brainnet.data.prep.plan_algonauts.ImageSubjectPlan` subjects,
    ``nsd_root`` None); ``fsaverage``: where the surfaces came from (a folder or ``nilearn:fsaverage``).
    """

    config: PrepareConfig
    nsd_root: Path | None
    alg_root: Path
    subjects: list
    image_ids: np.ndarray
    image_source: str
    image_paths: dict[int, Path]
    surfaces: dict[str, np.ndarray]
    sources: list[Path] = field(default_factory=list)
    level: str = "trial"
    fsaverage: str = ""

    def fingerprint(self) -> str:
        """sha256 over the parameters and (path, size, mtime) of every source file."""
        digest = hashlib.sha256()
        import json

        digest.update(json.dumps(self.config.to_json(), sort_keys=True).encode())
        if self.level != "trial":
            digest.update(f"level={self.level}\tfsaverage={self.fsaverage}\n".encode())
        for path in sorted(set(self.sources)):
            stat = path.stat()
            digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()


def _names_array(mapping: dict[int, str]) -> np.ndarray:
    names = [""] * (max(mapping) + 1)
    for code, name in mapping.items():
        names[code] = name
    return np.array(names, dtype=str)


def algonauts_roi(alayout: alg.AlgonautsLayout, name: str, roi_class: str, mesh: tuple[int, int],
                  sel: np.ndarray, sources: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """One ``roi_masks`` class of a subject at the selected vertices.

    Args:
        mesh: vertices per hemisphere; sel: int [V] selected rows of the lh + rh concatenation.

    Returns:
        int16 codes [V] and the names array (``names[code]``; "" for a code without a name).
    """
    per_hemi = []
    for h, hemi in enumerate(nsd.HEMIS):
        path = alayout.roi_mask(name, hemi, roi_class)
        per_hemi.append(alg.read_roi_mask(path, mesh[h]))
        sources.append(path)
    codes = np.concatenate(per_hemi)[sel]
    mpath = alayout.roi_mapping(name, roi_class)
    mapping = alg.read_roi_mapping(mpath)
    sources.append(mpath)
    missing = sorted(set(np.unique(codes).tolist()) - set(mapping))
    if missing:
        raise DataFormatError(mpath, f"names for every code of the {roi_class} masks", f"codes {missing} missing")
    return codes, _names_array(mapping)


def fsaverage_atlas(folder: Path, atlas: str, mesh: tuple[int, int], sel: np.ndarray,
                    sources: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """One fsaverage label atlas (``label/?h.<atlas>.mgz`` + ctab) at the selected vertices: int16 [V], names."""
    where = fs.FsaverageFolder(folder)
    per_hemi, names = [], None
    for h, hemi in enumerate(nsd.HEMIS):
        codes, names = fs.read_label(where.label(hemi, atlas), where.ctab(atlas), mesh[h])
        per_hemi.append(codes)
        sources += [where.label(hemi, atlas), where.ctab(atlas)]
    return np.concatenate(per_hemi)[sel], _names_array(names)


def _subject_plan(name: str, cfg: PrepareConfig, layout: nsd.NSDLayout, alayout: alg.AlgonautsLayout,
                  design: nsd.ExpDesign, surfaces: dict[str, np.ndarray], mesh: tuple[int, int],
                  sources: list[Path]) -> tuple[dict, dict]:
    """First pass over one subject: everything except the image rows (set once all subjects are read)."""
    resp_path = layout.responses(name)
    responses = nsd.read_responses(resp_path)
    sources += [resp_path]
    session = responses["SESSION"].to_numpy()
    n_sessions = int(session.max())
    if cfg.n_heldout_sessions >= n_sessions:
        raise DataFormatError(resp_path, f"more than {cfg.n_heldout_sessions} sessions (the held-out ones)",
                              f"{n_sessions} sessions")
    if n_sessions > design.stimpattern.shape[0]:
        raise DataFormatError(layout.expdesign, f"stimpattern for {n_sessions} sessions ({resp_path.name})",
                              f"{design.stimpattern.shape[0]} sessions")

    # betas headers: complete files of the right shape for every session. Trials per session are
    # given three times (design, responses, betas); the one that disagrees with the other two is named.
    betas = []
    for s in range(1, n_sessions + 1):
        n_design = int(design.stimpattern[s - 1].sum())
        n_resp = int(np.sum(session == s))
        pair = []
        for h, hemi in enumerate(nsd.HEMIS):
            path = layout.betas(name, hemi, s, cfg.space, cfg.beta_version)
            info = fs.mgh_info(path)
            n_betas = info.shape[3]
            if info.shape[:3] != (mesh[h], 1, 1) or (n_betas != n_design and n_design == n_resp):
                raise DataFormatError(path, f"shape {(mesh[h], 1, 1, n_design)} ({hemi} mesh vertices x the "
                                            "session's trials)", f"shape {info.shape}")
            if n_resp != n_design and n_betas == n_design:
                raise DataFormatError(resp_path, f"{n_design} trials in session {s} (as the design and betas)",
                                      f"{n_resp} rows")
            if n_resp != n_design:
                raise DataFormatError(layout.expdesign, f"stimpattern[{s - 1}] with {n_resp} stimulus slots "
                                      f"(as {resp_path.name} and {path.name})", f"{n_design} stimulus slots")
            pair.append(path)
            sources.append(path)
        betas.append(tuple(pair))
    trials = trial_table(design, responses, name, layout.expdesign, resp_path)
    behaviour = behaviour_features(responses)
    heldout = trials["session"] > n_sessions - cfg.n_heldout_sessions
    session_rows = []
    for s in range(1, n_sessions + 1):
        rows = np.flatnonzero(session == s)
        session_rows.append((int(rows[0]), int(rows[-1]) + 1))

    # vertex selection from the Algonauts mask and the noise ceiling
    masks, ncs = [], []
    for h, hemi in enumerate(nsd.HEMIS):
        mpath = alayout.all_vertices_mask(name, hemi)
        masks.append(alg.read_vertex_mask(mpath, mesh[h]))
        npath = layout.ncsnr(name, hemi, cfg.space, cfg.beta_version)
        ncs.append(noise_ceiling(nsd.read_ncsnr(npath, mesh[h])))
        sources += [mpath, npath]
    mask_all, nc_all = np.concatenate(masks), np.concatenate(ncs)
    selected, used = select_vertices(mask_all, nc_all, cfg.nc_threshold)
    sel = np.flatnonzero(selected)
    hemi_of = (sel >= mesh[0]).astype(np.int8)
    index = np.where(hemi_of == 0, sel, sel - mesh[0]).astype(np.int64)
    sphere = np.concatenate([surfaces["lh_sphere_coords"], surfaces["rh_sphere_coords"]])[sel]

    # Algonauts listings and fmri shapes agree with the design
    train = alg.list_images(alayout.image_dir(name, "train"), "train")
    test = alg.list_images(alayout.image_dir(name, "test"), "test")
    for h, hemi in enumerate(nsd.HEMIS):
        fpath = alayout.training_fmri(name, hemi)
        alg.read_training_fmri(fpath, n_images=len(train), n_vertices=int(masks[h].sum()))
        sources.append(fpath)
    early = np.unique(trials["nsd_id"][~heldout])
    late_only = np.setdiff1d(trials["nsd_id"][heldout], early)
    tdir = alayout.image_dir(name, "train")
    if not np.array_equal(np.sort(train.nsd_ids), early):
        differing = np.setxor1d(train.nsd_ids, early).size
        raise DataFormatError(tdir, f"the {early.size} images of sessions 1..{n_sessions - cfg.n_heldout_sessions} "
                                    f"({resp_path.name})", f"{len(train)} images, {differing} differing")
    if not np.array_equal(np.sort(test.nsd_ids), late_only):
        raise DataFormatError(alayout.image_dir(name, "test"),
                              f"the {late_only.size} images shown only in the last {cfg.n_heldout_sessions} sessions",
                              f"{len(test)} images, {np.setxor1d(test.nsd_ids, late_only).size} differing")

    # ROI labels at the selected vertices
    rois: dict[str, np.ndarray] = {}
    for roi_class in cfg.algonauts_rois:
        rois[roi_class], rois[f"{roi_class}__names"] = algonauts_roi(alayout, name, roi_class, mesh, sel, sources)
    for atlas in cfg.fsaverage_atlases:
        rois[atlas], rois[f"{atlas}__names"] = fsaverage_atlas(layout.fsaverage, atlas, mesh, sel, sources)

    first = dict(name=name, trials=trials, heldout=heldout, behaviour=behaviour, hemi=hemi_of, index=index,
                 challenge=mask_all[sel], sphere=sphere.astype(np.float32), noise_ceiling=nc_all[sel],
                 rois=rois, betas=betas, session_rows=session_rows, mesh_sizes=mesh, nc_threshold_used=used,
                 n_train_images=len(train), n_test_images=len(test))
    listings = {"train": train, "test": test}
    return first, listings


def make_plan(nsd_dir: str | Path, alg_dir: str | Path, cfg: PrepareConfig) -> DatasetPlan:
    """Read and cross-check all inputs (no pixels, no betas) and plan the outputs."""
    layout = nsd.NSDLayout(Path(nsd_dir).resolve())
    alayout = alg.AlgonautsLayout(Path(alg_dir).resolve())
    if not layout.root.is_dir():
        raise DataFormatError(layout.root, "the NSD folder", "no such folder")
    subjects = list(cfg.subjects) if cfg.subjects is not None else alayout.subjects()
    if not subjects:
        raise DataFormatError(alayout.root, "subject folders subjXX", "none")
    sources: list[Path] = [layout.expdesign]
    design = nsd.read_expdesign(layout.expdesign)
    surfaces, mesh = read_fsaverage_folder(layout.fsaverage, sources)

    firsts, listings = [], []
    for name in subjects:
        first, listing = _subject_plan(name, cfg, layout, alayout, design, surfaces, mesh, sources)
        firsts.append(first)
        listings.append(listing)

    image_ids = np.unique(np.concatenate([f["trials"]["nsd_id"] for f in firsts]))
    source = cfg.image_source
    if source == "auto":
        source = "hdf5" if layout.stimuli.is_file() else "png"
        log.debug("image source: %s", source)
    image_paths: dict[int, Path] = {}
    if source == "hdf5":
        with nsd.NSDStimuli(layout.stimuli) as stimuli:
            if image_ids.size and image_ids.max() >= len(stimuli):
                raise DataFormatError(layout.stimuli, f"imgBrick rows for ids up to {image_ids.max()}",
                                      f"{len(stimuli)} rows")
        sources.append(layout.stimuli)
    else:
        for listing in listings:
            for part in listing.values():
                image_paths.update(zip(part.nsd_ids.tolist(), part.paths))
        missing = np.setdiff1d(image_ids, np.fromiter(image_paths, np.int64, len(image_paths)))
        if missing.size:
            raise DataFormatError(alayout.root, "a PNG for every image shown", f"{missing.size} images without one")
        sources += list(image_paths.values())

    splits, _ = assign_splits([f["trials"]["nsd_id"] for f in firsts], [f["heldout"] for f in firsts],
                              cfg.split_fractions, cfg.split_seed)
    plans = []
    n_slots = design.stimpattern.shape[2]
    for first, split in zip(firsts, splits):
        trials = first.pop("trials")
        first.pop("heldout")
        image = np.searchsorted(image_ids, trials["nsd_id"])
        trials = {**trials, "image": image.astype(np.int64), "split": split}
        mem = memory_index(trials["session"], trials["run"], trials["slot"], image, n_slots)
        plans.append(SubjectPlan(trials=trials, memory_index=mem, **first))
    log.debug("plan: %s; %d images; %d source files checked", ", ".join(f"{p.name} {p.n_trials} trials x "
              f"{p.n_vertices} vertices" for p in plans), image_ids.size, len(sources))
    return DatasetPlan(config=cfg, nsd_root=layout.root, alg_root=alayout.root, subjects=plans,
                       image_ids=image_ids.astype(np.int64), image_source=source, image_paths=image_paths,
                       surfaces=surfaces, sources=sources, fsaverage=str(layout.fsaverage))
