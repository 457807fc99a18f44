"""Access to a prepared dataset: the one reader of the layout in ``docs/prepared-dataset.md``.

``PreparedDataset(root)`` reads ``manifest.json`` and checks every file it maps before anything
uses it: the file is there with the size the manifest recorded, and each ``.npy`` header (dtype,
shape) agrees with the manifest's counts and, from format version 2 on, with the dtype and shape
the manifest recorded. A bad file raises :class:`~brainnet.errors.DataFormatError` naming it.
Arrays open lazily (the fMRI as a read-only memmap) in the process that uses them, so subject
objects can be handed to DataLoader workers. :meth:`PreparedDataset.verify` re-hashes every file.
"""

from __future__ import annotations

import json
import logging
import zipfile
from functools import cached_property
from pathlib import Path

import numpy as np

from brainnet.data import layout as L
from brainnet.data.noise_ceiling import ncsnr_from_noise_ceiling
from brainnet.data.prepared_checks import check_files, check_manifest, verify_files
from brainnet.errors import DataFormatError, MissingInputError

log = logging.getLogger(__name__)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive (no pickles); a damaged archive (bad zip directory, CRC,
    member header) raises :class:`DataFormatError` naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataFormatError(path, "a readable .npz archive", f"{type(err).__name__}: {err}") from None


class PreparedSubject:
    """One subject of a prepared dataset; every array is read on first access.

    Attributes:
        name: ``"subj01"``; counts: the manifest's entry for the subject; folder: its directory.
    """

    def __init__(self, dataset: PreparedDataset, name: str):
        self.dataset = dataset
        self.name = name
        self.folder = dataset.root / name
        self.counts: dict = dataset.manifest["subjects"][name]

    def __repr__(self) -> str:
        return f"PreparedSubject({self.name!r}, {self.n_trials} trials, {self.n_vertices} vertices)"

    def __getstate__(self) -> dict:
        # drop opened arrays (memmaps, tables): a worker process reopens them itself
        return {k: v for k, v in self.__dict__.items() if k in ("dataset", "name", "folder", "counts")}

    @property
    def n_trials(self) -> int:
        return int(self.counts["n_trials"])

    @property
    def n_vertices(self) -> int:
        return int(self.counts["n_vertices"])

    def path(self, name: str) -> Path:
        """Path of one of the subject's files (a name of :data:`brainnet.data.layout.SUBJECT_FILES`)."""
        return self.folder / name

    def _npy(self, name: str, mmap: bool) -> np.ndarray:
        return np.load(self.path(name), mmap_mode="r" if mmap else None, allow_pickle=False)

    def _npz(self, name: str) -> dict[str, np.ndarray]:
        return load_npz(self.path(name))

    @cached_property
    def fmri(self) -> np.ndarray:
        """float16 memmap [n_trials, n_vertices]: z-scored within session, NaN -> 0."""
        return self._npy(L.FMRI, mmap=True)

    @cached_property
    def trials(self) -> dict[str, np.ndarray]:
        """Per-trial columns, each [n_trials]: session, run, trial, slot, nsd_id, image, split."""
        table = self._npz(L.TRIALS)
        missing = [k for k in ("session", "run", "trial", "slot", "nsd_id", "image", "split") if k not in table]
        bad = [k for k, v in table.items() if v.shape != (self.n_trials,)]
        if missing or bad:
            raise DataFormatError(self.path(L.TRIALS), f"columns session, run, trial, slot, nsd_id, image, split "
                                  f"of {self.n_trials} rows", f"missing {missing}, wrong length {bad}")
        return table

    @property
    def split(self) -> np.ndarray:
        """int8 [n_trials] split codes (:data:`brainnet.data.layout.SPLIT_CODES`)."""
        return self.trials["split"]

    @property
    def image(self) -> np.ndarray:
        """int64 [n_trials]: row of :attr:`PreparedDataset.images` shown at each trial."""
        return self.trials["image"].astype(np.int64)

    def split_mask(self, split) -> np.ndarray:
        """bool [n_trials] for a split name of :data:`~brainnet.data.layout.SPLITS`, a list, or ``"all"``."""
        return L.split_mask(self.split, self.trials["image"], split)

    def split_rows(self, split) -> np.ndarray:
        """int64 trial rows of ``split`` (see :meth:`split_mask`), in time order."""
        return np.flatnonzero(self.split_mask(split))

    @cached_property
    def memory_index(self) -> np.ndarray:
        """int32 [n_trials, 33]: image row shown k slots before each trial (-1: blank / before run)."""
        return self._npy(L.MEMORY_INDEX, mmap=False)

    @cached_property
    def behaviour(self) -> np.ndarray:
        """float32 [n_trials, 35] behaviour features (:data:`brainnet.data.layout.BEHAVIOUR_COLUMNS`);
        :class:`MissingInputError` on a dataset without (image level)."""
        self.dataset.require("behaviour", f"{self.name}.behaviour")
        return self._npy(L.BEHAVIOUR, mmap=False)

    @cached_property
    def noise_ceiling(self) -> np.ndarray:
        """float32 [n_vertices], fraction in [0, 1] for the mean of 3 repeats; :class:`MissingInputError`
        on a dataset without (image level)."""
        self.dataset.require("noise_ceiling", f"{self.name}.noise_ceiling")
        return self._npy(L.NOISE_CEILING, mmap=False)

    @property
    def ncsnr(self) -> np.ndarray:
        """float64 [n_vertices] NSD ncsnr, recovered exactly from :attr:`noise_ceiling` (0 where it is 0).

        For the NC of other repeat counts: :func:`brainnet.data.noise_ceiling.noise_ceiling`.
        Raises :class:`MissingInputError` without a noise ceiling."""
        self.dataset.require("noise_ceiling", f"{self.name}.ncsnr")
        return ncsnr_from_noise_ceiling(self.noise_ceiling)

    def has_fmri(self, split="all") -> bool:
        """True when every row of ``split`` (as :meth:`split_mask` takes it) has measured fMRI.

        Always True on a trial-level dataset; on an image-level one the ``predict`` rows (the
        release's test images; ``heldout`` = the same rows) have none (their ``fmri`` rows are 0)."""
        if self.dataset.level == "trial":
            return True
        names = list(L.SPLIT_CODES) if split == "all" else [split] if isinstance(split, str) else list(split)
        return not any(name in ("predict", "heldout") for name in names)

    @cached_property
    def vertex_valid(self) -> np.ndarray:
        """bool [n_vertices]: False where the source betas were NaN."""
        return self._npy(L.VERTEX_VALID, mmap=False)

    @cached_property
    def vertices(self) -> dict[str, np.ndarray]:
        """hemi int8 [V] (0 lh, 1 rh, :data:`~brainnet.data.layout.HEMI_VOLUME` voxel), index int64 [V]
        (vertex index, or flat C-order voxel index), sphere float32 [V, 3] (voxels: scanner mm),
        challenge bool [V]; with voxels also volume_affine float64 [4, 4] and volume_shape int64 [3]."""
        table = self._npz(L.VERTICES)
        bad = [k for k in ("hemi", "index", "sphere", "challenge")
               if k not in table or table[k].shape[:1] != (self.n_vertices,)]
        if bad:
            raise DataFormatError(self.path(L.VERTICES), f"hemi, index, sphere, challenge of {self.n_vertices} rows",
                                  f"missing or wrong length: {bad}")
        return table

    @property
    def hemi(self) -> np.ndarray:
        return self.vertices["hemi"]

    @property
    def challenge(self) -> np.ndarray:
        return self.vertices["challenge"].astype(bool)

    @property
    def is_voxel(self) -> np.ndarray:
        """bool [V]: the unit is a subject-space voxel (they follow the :attr:`n_surface` vertices)."""
        return self.hemi == L.HEMI_VOLUME

    @property
    def n_surface(self) -> int:
        """Units that are fsaverage vertices (the first ones)."""
        return int((self.hemi != L.HEMI_VOLUME).sum())

    @property
    def volume_shape(self) -> tuple[int, int, int] | None:
        """(X, Y, Z) of the voxels' grid (None without voxels)."""
        shape = self.vertices.get("volume_shape")
        return None if shape is None else tuple(int(n) for n in shape)

    @property
    def volume_affine(self) -> np.ndarray | None:
        """float64 [4, 4] voxel (i, j, k) -> scanner mm of the voxels' grid (None without voxels)."""
        return self.vertices.get("volume_affine")

    @property
    def voxel_ijk(self) -> np.ndarray:
        """int64 [n_voxels, 3] grid coordinates of the voxel units, in unit order (empty without voxels)."""
        index = self.vertices["index"][self.is_voxel]
        if self.volume_shape is None:
            return np.zeros((0, 3), np.int64)
        return np.stack(np.unravel_index(index, self.volume_shape), axis=1).astype(np.int64)

    @cached_property
    def rois(self) -> dict[str, tuple[np.ndarray, list[str]]]:
        """atlas -> (int64 labels [V], names with ``names[code]``; code 0 = ``"Unknown"``)."""
        table = self._npz(L.ROIS)
        out = {}
        for key in table:
            if "__" in key:
                continue
            if f"{key}__names" not in table or table[key].shape != (self.n_vertices,):
                names_state = "present" if f"{key}__names" in table else "missing"
                raise DataFormatError(self.path(L.ROIS), f"atlas {key!r}: {self.n_vertices} labels and {key}__names",
                                      f"shape {table[key].shape}, names {names_state}")
            out[key] = (table[key].astype(np.int64), [str(n) for n in table[f"{key}__names"]])
        return out

    def roi_labels(self, atlas: str) -> tuple[np.ndarray, list[str]]:
        """(labels [V], names) of one atlas; KeyError listing the atlases present."""
        if atlas not in self.rois:
            raise KeyError(f"atlas {atlas!r} not in {self.name}'s ROIs (have {sorted(self.rois)})")
        return self.rois[atlas]


class PreparedDataset:
    """A finished prepared dataset directory, checked on open.

    Args:
        root: the directory ``prepare`` wrote.

    Attributes:
        root, manifest; :attr:`subjects` (names), :meth:`subject`, :attr:`images`
        (uint8 memmap [n_images, S, S, 3]), :attr:`image_ids` (int64 [n_images], 0-based NSD ids),
        :attr:`surfaces` (the meshes, see ``docs/prepared-dataset.md``).

    Raises:
        FileNotFoundError: ``root`` holds no ``manifest.json`` (not a finished dataset).
        DataFormatError: the manifest or a file it lists is malformed, missing, truncated, or of
            another dtype / shape than the manifest says.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        path = self.root / L.MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {self.root} is not a finished prepared dataset "
                                    "(run `brainnet prepare` first)")
        try:
            self.manifest: dict = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise DataFormatError(path, "a JSON manifest", f"{type(err).__name__}: {err}") from None
        if not isinstance(self.manifest, dict):
            raise DataFormatError(path, "a JSON object (the manifest)", type(self.manifest).__name__)
        version = self.manifest.get("format_version")
        if self.manifest.get("format") != L.FORMAT_NAME or version not in L.READABLE_VERSIONS:
            raise DataFormatError(path, f"format {L.FORMAT_NAME!r} version in {L.READABLE_VERSIONS}",
                                  f"{self.manifest.get('format')!r} version {version!r} "
                                  "(re-run `brainnet prepare` with this brainnet)")
        check_manifest(path, self.manifest)
        self._subjects = {name: PreparedSubject(self, name) for name in self.manifest["subjects"]}
        self.check()

    @classmethod
    def open(cls, data: str | Path | PreparedDataset) -> PreparedDataset:
        """``data`` itself when it is already open, else ``PreparedDataset(data)``."""
        return data if isinstance(data, cls) else cls(data)

    def __repr__(self) -> str:
        return f"PreparedDataset({str(self.root)!r}, subjects={list(self.subjects)})"

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k in ("root", "manifest", "_subjects")}

    # --- contents ------------------------------------------------------------------------------
    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(self._subjects)

    def subject(self, subject: int | str) -> PreparedSubject:
        """``"subj01"`` or ``1`` -> its :class:`PreparedSubject` (KeyError naming the subjects present)."""
        name = L.subject_name(subject)
        if name not in self._subjects:
            raise KeyError(f"{name} is not in the prepared dataset {self.root} (has {list(self._subjects)})")
        return self._subjects[name]

    @property
    def n_images(self) -> int:
        return int(self.manifest["images"]["n_images"])

    @property
    def image_size(self) -> int:
        return int(self.manifest["images"]["size"])

    @cached_property
    def images(self) -> np.ndarray:
        """uint8 memmap [n_images, S, S, 3]: every image any subject saw, stored once."""
        return np.load(self.root / L.IMAGES, mmap_mode="r", allow_pickle=False)

    @cached_property
    def image_ids(self) -> np.ndarray:
        """int64 [n_images]: 0-based NSD (73k) id of each image row, ascending."""
        return np.load(self.root / L.IMAGE_IDS, allow_pickle=False)

    @cached_property
    def surfaces(self) -> dict[str, np.ndarray]:
        """``{hemi}_{surf}_coords`` [n, 3], ``{hemi}_{surf}_faces`` [f, 3], ``{hemi}_sulc`` [n]."""
        return load_npz(self.root / L.SURFACES)

    @property
    def behaviour_columns(self) -> tuple[str, ...]:
        return tuple(self.manifest.get("behaviour", {}).get("columns", L.BEHAVIOUR_COLUMNS))

    # --- level and inputs ----------------------------------------------------------------------
    @property
    def level(self) -> str:
        """``"trial"`` (prepared from the NSD tree) or ``"image"`` (from the Algonauts 2023 release alone)."""
        return str(self.manifest.get("level", "trial"))

    @property
    def inputs(self) -> dict[str, bool]:
        """Which optional inputs (:data:`brainnet.data.layout.INPUTS`) the dataset has."""
        recorded = self.manifest.get("inputs") or {}
        return {name: bool(recorded.get(name, True)) for name in L.INPUTS}

    def has(self, name: str) -> bool:
        """True when the dataset has input ``name`` (one of :data:`brainnet.data.layout.INPUTS`)."""
        if name not in L.INPUTS:
            raise ValueError(f"unknown input {name!r}; choose from {list(L.INPUTS)}")
        return self.inputs[name]

    def require(self, name: str, needed_by: str) -> None:
        """:class:`~brainnet.errors.MissingInputError` naming ``needed_by`` when input ``name`` is absent."""
        if not self.has(name):
            where = ("prepared from the Algonauts 2023 release alone" if self.level == "image"
                     else "the manifest marks it absent")
            raise MissingInputError(f"{self.root}: this dataset has no {name.replace('_', ' ')} ({where}); "
                                    f"{needed_by} needs it — prepare with --nsd-dir")

    @property
    def sources(self) -> dict:
        """The manifest's ``sources`` (nsd_dir, algonauts_dir, fsaverage, image_source, nsd_mini_root)."""
        return dict(self.manifest.get("sources", {}))

    @property
    def nsd_mini_root(self) -> Path | None:
        """The nsd-mini folder (holding ``ground_truth.npz``) it was prepared from, if recorded and there."""
        root = self.sources.get("nsd_mini_root")
        return Path(root) if root and (Path(root) / "ground_truth.npz").is_file() else None

    # --- checks (brainnet.data.prepared_checks) ------------------------------------------------
    def check(self) -> None:
        """Check every listed file's presence and size and every ``.npy`` header (no hashing).

        Raises:
            DataFormatError: naming the first bad file.
        """
        check_files(self)

    def verify(self, progress: bool = False) -> int:
        """Re-hash every listed file against the manifest's sha256; returns the number of files.

        Raises:
            DataFormatError: naming the first file whose content changed (and how many did).
        """
        return verify_files(self, progress)


def prepared_root(data: str | Path | PreparedDataset) -> Path:
    """The directory of a prepared dataset given as a path or an open :class:`PreparedDataset` (not opened)."""
    return data.root if isinstance(data, PreparedDataset) else Path(data)
