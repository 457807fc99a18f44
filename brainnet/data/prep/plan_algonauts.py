"""Plan an image-level dataset from the Algonauts 2023 release alone (no NSD tree).

The release per subject: ``training_split/training_fmri/{lh,rh}_training_fmri.npy`` (float32
[n_train_images, n_mask_vertices], already z-scored per session and averaged over repeats),
``training_split/training_images/train-NNNN_nsd-NNNNN.png``, ``test_split/test_images/
test-NNNN_nsd-NNNNN.png`` and ``roi_masks/`` (the all-vertices mask, ROI classes, mappings),
all over fsaverage vertices. :func:`make_image_plan` reads and cross-checks all of it (no pixels,
no fMRI values) and returns a :class:`~brainnet.data.prep.plan.DatasetPlan` of ``level="image"``:

* rows per subject: its training images in release order, then its test images (split
  ``predict``, no fMRI: their rows stay 0). ``trials.npz`` keeps the trial-level columns:
  session = run = slot = 0, trial = row number.
* train / val / test: image-disjoint, drawn from the training images of all subjects with
  :func:`~brainnet.data.prep.tables.assign_splits` (``split_seed``, ``split_fractions``).
* vertices: the all-vertices mask (lh then rh, ascending fsaverage index), all ``challenge``.
* ROI labels: the ``roi_masks`` classes (``algonauts_rois``); each ``fsaverage_atlases`` atlas
  from the fsaverage folder's ``label/`` when it is there, else from ``roi_masks`` when the
  release has that class (``streams``), else left out.
* surfaces / sphere coordinates: :func:`brainnet.data.prep.fsaverage.fsaverage_surfaces`.

A bad input raises :class:`~brainnet.errors.DataFormatError` naming the file, before anything
is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainnet.data.formats import algonauts as alg
from brainnet.data.formats import freesurfer as fs
from brainnet.data.prep.config import PrepareConfig
from brainnet.data.prep.fsaverage import HEMIS, NILEARN_SOURCE, fsaverage_surfaces
from brainnet.data.prep.plan import DatasetPlan, algonauts_roi, fsaverage_atlas
from brainnet.data.prep.tables import MEMORY_FRAMES, assign_splits
from brainnet.errors import DataFormatError

log = logging.getLogger(__name__)


@dataclass
class ImageSubjectPlan:
    """One subject of an image-level dataset.

    Attributes:
        name: ``"subj01"``.
        trials: int64 arrays [n_rows] session, run, trial, slot, nsd_id, image and int8 split.
        memory_index: int32 [n_rows, 33]: column 0 the row's image, the others -1.
        hemi, index: int8 / int64 [V] mask vertices (lh first, ascending fsaverage index).
        challenge: bool [V] (all True); sphere: float32 [V, 3].
        rois: {atlas: int16 [V], atlas + "__names": str array}.
        fmri: the release's (lh, rh) training fMRI files.
        mesh_sizes: fsaverage vertices per hemisphere.
        n_train_images, n_test_images: the release's image counts (rows = their sum).
        behaviour, noise_ceiling: None (the release has neither).
    """

    name: str
    trials: dict[str, np.ndarray]
    memory_index: np.ndarray
    hemi: np.ndarray
    index: np.ndarray
    challenge: np.ndarray
    sphere: np.ndarray
    rois: dict[str, np.ndarray]
    fmri: tuple[Path, Path]
    mesh_sizes: tuple[int, int]
    n_train_images: int
    n_test_images: int
    behaviour: None = None
    noise_ceiling: None = None

    @property
    def n_trials(self) -> int:
        """Rows (training + test images)."""
        return int(self.trials["nsd_id"].size)

    @property
    def n_vertices(self) -> int:
        return int(self.hemi.size)

    @property
    def hemi_columns(self) -> tuple[int, int]:
        """Vertices of (lh, rh): the column counts of the release's two fMRI files."""
        return int((self.hemi == 0).sum()), int((self.hemi == 1).sum())


def check_config(cfg: PrepareConfig) -> None:
    """ValueError for settings that need the NSD tree."""
    if cfg.nc_threshold is not None:
        raise ValueError(f"nc_threshold={cfg.nc_threshold!r} needs the NSD noise ceiling (ncsnr): prepare with "
                         "--nsd-dir, or leave nc_threshold None for the Algonauts 2023 release alone")
    if cfg.image_source == "hdf5":
        raise ValueError("image_source='hdf5' needs the NSD stimulus file: prepare with --nsd-dir, or use 'png' "
                         "('auto') for the Algonauts 2023 release alone")


def _listings(alayout: alg.AlgonautsLayout, name: str) -> tuple[alg.ImageListing, alg.ImageListing]:
    train = alg.list_images(alayout.image_dir(name, "train"), "train")
    test = alg.list_images(alayout.image_dir(name, "test"), "test")
    shared = np.intersect1d(train.nsd_ids, test.nsd_ids)
    if shared.size:
        raise DataFormatError(alayout.image_dir(name, "test"), "test images whose NSD ids no training image has",
                              f"{shared.size} NSD ids also in {alayout.image_dir(name, 'train')} "
                              f"(e.g. nsd-{int(shared[0]):05d})")
    if not len(train):
        raise DataFormatError(alayout.image_dir(name, "train"), "training images", "none")
    return train, test


def _subject(name: str, cfg: PrepareConfig, alayout: alg.AlgonautsLayout, mesh: tuple[int, int],
             surfaces: dict[str, np.ndarray], fsaverage_dir: Path | None, sources: list[Path]) -> dict:
    masks = []
    for h, hemi in enumerate(HEMIS):
        path = alayout.all_vertices_mask(name, hemi)
        masks.append(alg.read_vertex_mask(path, mesh[h]))
        sources.append(path)
    train, test = _listings(alayout, name)
    fmri = []
    for h, hemi in enumerate(HEMIS):
        path = alayout.training_fmri(name, hemi)
        alg.read_training_fmri(path, n_images=len(train), n_vertices=int(masks[h].sum()))
        fmri.append(path)
        sources.append(path)
    sel = np.flatnonzero(np.concatenate(masks))
    hemi_of = (sel >= mesh[0]).astype(np.int8)
    index = np.where(hemi_of == 0, sel, sel - mesh[0]).astype(np.int64)
    sphere = np.concatenate([surfaces["lh_sphere_coords"], surfaces["rh_sphere_coords"]])[sel]

    rois: dict[str, np.ndarray] = {}
    for roi_class in cfg.algonauts_rois:
        rois[roi_class], rois[f"{roi_class}__names"] = algonauts_roi(alayout, name, roi_class, mesh, sel, sources)
    for atlas in cfg.fsaverage_atlases:
        where = fs.FsaverageFolder(fsaverage_dir) if fsaverage_dir is not None else None
        if where is not None and all(where.label(h, atlas).is_file() for h in HEMIS) and where.ctab(atlas).is_file():
            rois[atlas], rois[f"{atlas}__names"] = fsaverage_atlas(where.root, atlas, mesh, sel, sources)
        elif atlas in alg.ROI_CLASSES and alayout.roi_mapping(name, atlas).is_file():
            rois[atlas], rois[f"{atlas}__names"] = algonauts_roi(alayout, name, atlas, mesh, sel, sources)
        else:
            log.info("%s: no %s labels (neither in the fsaverage folder nor in roi_masks): left out", name, atlas)
    nsd_ids = np.concatenate([train.nsd_ids, test.nsd_ids]).astype(np.int64)
    return dict(name=name, nsd_ids=nsd_ids, is_test=np.arange(nsd_ids.size) >= len(train), hemi=hemi_of,
                index=index, challenge=np.ones(sel.size, bool), sphere=sphere.astype(np.float32), rois=rois,
                fmri=tuple(fmri), mesh_sizes=mesh, n_train_images=len(train), n_test_images=len(test),
                paths=train.paths + test.paths)


def make_image_plan(alg_dir: str | Path, cfg: PrepareConfig, fsaverage_dir: str | Path | None = None) -> DatasetPlan:
    """Read and cross-check the Algonauts 2023 release (no pixels, no fMRI values) and plan the outputs.

    Args:
        alg_dir: the folder holding subj01, ...; cfg: the parameters (``nc_threshold`` None,
            ``image_source`` png / auto).
        fsaverage_dir: a FreeSurfer fsaverage folder, or None (nilearn's fetcher when online).

    Raises:
        DataFormatError: naming the bad file; ValueError: settings that need the NSD tree.
    """
    check_config(cfg)
    alayout = alg.AlgonautsLayout(Path(alg_dir).resolve())
    subjects = list(cfg.subjects) if cfg.subjects is not None else alayout.subjects()
    if not subjects:
        raise DataFormatError(alayout.root, "subject folders subjXX", "none")
    sources: list[Path] = []
    first_masks = tuple(alayout.all_vertices_mask(subjects[0], h) for h in HEMIS)
    mesh = tuple(int(alg.read_vertex_mask(p).size) for p in first_masks)
    folder = Path(fsaverage_dir).expanduser().resolve() if fsaverage_dir is not None else None
    surfaces, where = fsaverage_surfaces(folder, mesh, first_masks, sources)

    firsts = [_subject(name, cfg, alayout, mesh, surfaces, folder, sources) for name in subjects]
    image_paths: dict[int, Path] = {}
    for first in firsts:
        image_paths.update(zip(first["nsd_ids"].tolist(), first.pop("paths")))
    image_ids = np.unique(np.concatenate([f["nsd_ids"] for f in firsts]))
    sources += [image_paths[int(i)] for i in image_ids]
    splits, _ = assign_splits([f["nsd_ids"] for f in firsts], [f["is_test"] for f in firsts],
                              cfg.split_fractions, cfg.split_seed)
    plans = []
    for first, split in zip(firsts, splits):
        nsd_ids = first.pop("nsd_ids")
        first.pop("is_test")
        n = nsd_ids.size
        image = np.searchsorted(image_ids, nsd_ids).astype(np.int64)
        zeros = np.zeros(n, np.int64)
        trials = {"session": zeros, "run": zeros, "trial": np.arange(n, dtype=np.int64), "slot": zeros,
                  "nsd_id": nsd_ids, "image": image, "split": split}
        memory = np.full((n, MEMORY_FRAMES), -1, dtype=np.int32)
        memory[:, 0] = image
        plans.append(ImageSubjectPlan(trials=trials, memory_index=memory, **first))
    log.debug("image-level plan: %s; %d images; surfaces from %s", ", ".join(
        f"{p.name} {p.n_trials} rows x {p.n_vertices} vertices" for p in plans), image_ids.size, where)
    return DatasetPlan(config=cfg, nsd_root=None, alg_root=alayout.root, subjects=plans,
                       image_ids=image_ids.astype(np.int64), image_source="png", image_paths=image_paths,
                       surfaces=surfaces, sources=sources, level="image",
                       fsaverage=where if where == NILEARN_SOURCE else str(Path(where)))
