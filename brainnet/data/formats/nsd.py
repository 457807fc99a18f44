"""Readers for the files of the NSD download tree: its layout, design, responses, betas, stimuli.

Index bases (see the NSD documentation): the MATLAB design file and the TSV id columns are
1-based, the stimulus HDF5 row is the 0-based 73k id. Every reader validates what it reads and
raises :class:`brainnet.errors.DataFormatError` naming the file on anything unexpected.

Paths inside an NSD root are built by :class:`NSDLayout`. The FreeSurfer formats the tree uses
(MGH / MGZ maps, surfaces, patches, label maps) are read by :mod:`brainnet.data.formats.freesurfer`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from brainnet.data.formats.betas import read_betas, read_betas_trials  # noqa: F401  (re-exported)
from brainnet.data.formats.freesurfer import FsaverageFolder, read_surface_values, require_file
from brainnet.data.formats.matfile import check_mat5
from brainnet.data.layout import subject_name, subject_number  # noqa: F401  (re-exported)
from brainnet.errors import DataFormatError

HEMIS: tuple[str, str] = ("lh", "rh")
#: func1mm betas are stored as int16 = percent signal change x this.
FUNC1MM_BETA_SCALE = 300
#: Label names (code i + 1) of NSD's subject-space ROI volumes ``func1mm/roi/<atlas>.nii.gz``.
FUNC1MM_ROI_NAMES: dict[str, tuple[str, ...]] = {
    "thalamus": ("LGN", "SC", "Vpu", "DLpu", "DMpu"),
    "MTL": ("ErC", "area35", "area36", "PhC", "Sub", "CA1", "CA2", "CA3", "DG", "HT"),
}

#: Columns of ``responses.tsv``, in file order.
RESPONSE_COLUMNS: tuple[str, ...] = (
    "SUBJECT", "SESSION", "RUN", "TRIAL", "73KID", "10KID", "TIME", "ISOLD", "ISCORRECT", "RT",
    "CHANGEMIND", "MEMORYRECENT", "MEMORYFIRST", "ISOLDCURRENT", "ISCORRECTCURRENT", "TOTAL1",
    "TOTAL2", "BUTTON", "MISSINGDATA",
)
#: Columns that must hold whole numbers (1-based ids and counters).
_RESPONSE_INT_COLUMNS: tuple[str, ...] = ("SUBJECT", "SESSION", "RUN", "TRIAL", "73KID", "10KID")


@dataclass(frozen=True)
class NSDLayout:
    """Paths of the NSD files below ``root`` (the NSD download folder)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def expdesign(self) -> Path:
        return self.root / "nsddata/experiments/nsd/nsd_expdesign.mat"

    @property
    def stim_info(self) -> Path:
        return self.root / "nsddata/experiments/nsd/nsd_stim_info_merged.csv"

    @property
    def stimuli(self) -> Path:
        return self.root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"

    @property
    def fsaverage(self) -> Path:
        return self.root / "nsddata/freesurfer/fsaverage"

    def responses(self, subject: int | str) -> Path:
        return self.root / "nsddata/ppdata" / subject_name(subject) / "behav/responses.tsv"

    def betas_dir(self, subject: int | str, space: str = "fsaverage",
                  beta_version: str = "betas_fithrf_GLMdenoise_RR") -> Path:
        return self.root / "nsddata_betas/ppdata" / subject_name(subject) / space / beta_version

    def betas(self, subject: int | str, hemi: str, session: int, space: str = "fsaverage",
              beta_version: str = "betas_fithrf_GLMdenoise_RR") -> Path:
        return self.betas_dir(subject, space, beta_version) / f"{hemi}.betas_session{session:02d}.mgh"

    def roi_volume(self, subject: int | str, name: str) -> Path:
        """A subject-space ROI label volume, ``func1mm/roi/<name>.nii.gz`` (thalamus, MTL, ...)."""
        return self.root / "nsddata/ppdata" / subject_name(subject) / "func1mm/roi" / f"{name}.nii.gz"

    def volume_betas(self, subject: int | str, session: int, beta_version: str = "betas_fithrf_GLMdenoise_RR") -> Path:
        """4-D func1mm betas of one session (int16 = percent signal change x :data:`FUNC1MM_BETA_SCALE`)."""
        return self.betas_dir(subject, "func1mm", beta_version) / f"betas_session{session:02d}.nii.gz"

    def volume_ncsnr(self, subject: int | str, beta_version: str = "betas_fithrf_GLMdenoise_RR") -> Path:
        return self.betas_dir(subject, "func1mm", beta_version) / "ncsnr.nii.gz"

    def ncsnr(self, subject: int | str, hemi: str, space: str = "fsaverage",
              beta_version: str = "betas_fithrf_GLMdenoise_RR") -> Path:
        return self.betas_dir(subject, space, beta_version) / f"{hemi}.ncsnr.mgh"

    def surface(self, hemi: str, surf: str) -> Path:
        return FsaverageFolder(self.fsaverage).surface(hemi, surf)

    def flat_patch(self, hemi: str) -> Path:
        return FsaverageFolder(self.fsaverage).flat_patch(hemi)

    def label(self, hemi: str, atlas: str) -> Path:
        return FsaverageFolder(self.fsaverage).label(hemi, atlas)

    def ctab(self, atlas: str) -> Path:
        return FsaverageFolder(self.fsaverage).ctab(atlas)


# --------------------------------------------------------------------------- expdesign


@dataclass(frozen=True)
class ExpDesign:
    """The NSD experimental design (``nsd_expdesign.mat``), all integer arrays.

    Attributes:
        masterordering: int64 [n_planned_trials], 1-based index into a subject's 10k list.
        subjectim: int64 [n_subjects, 10000], 1-based 73k ids per subject.
        sharedix: int64 [n_shared], 1-based 73k ids of the shared images.
        stimpattern: bool [n_sessions, n_runs, n_slots], True for a stimulus slot.
    """

    masterordering: np.ndarray
    subjectim: np.ndarray
    sharedix: np.ndarray
    stimpattern: np.ndarray

    def nsd_ids(self, subject: int | str, n_trials: int) -> np.ndarray:
        """0-based 73k ids of a subject's first ``n_trials`` trials in time order: int64 [n_trials]."""
        row = subject_number(subject) - 1
        return self.subjectim[row, self.masterordering[:n_trials] - 1] - 1


def _as_int_array(path: Path, name: str, value: np.ndarray) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    found = f"dtype {arr.dtype}"
    if arr.dtype.kind == "f":
        found += " with non-integer values"
    raise DataFormatError(path, f"integer array '{name}'", found)


def read_expdesign(path: str | os.PathLike) -> ExpDesign:
    """Read ``nsd_expdesign.mat`` (MAT v5) and check shapes, integer values and index ranges."""
    import scipy.io

    path = Path(path)
    require_file(path, "the NSD design file nsd_expdesign.mat")
    check_mat5(path)  # scipy crashes (segfault) on some malformed element tags instead of raising
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises many types on a damaged file
        raise DataFormatError(path, "a MATLAB v5 file", f"unreadable ({type(exc).__name__}: {exc})") from exc
    fields = {}
    for name in ("masterordering", "subjectim", "sharedix", "stimpattern"):
        if name not in mat:
            raise DataFormatError(path, f"field '{name}'", f"fields {sorted(k for k in mat if not k.startswith('__'))}")
        fields[name] = _as_int_array(path, name, mat[name])
    master = fields["masterordering"]
    subjectim = fields["subjectim"]
    stim = fields["stimpattern"]
    if master.ndim != 2 or master.shape[0] != 1:
        raise DataFormatError(path, "masterordering of shape (1, n_trials)", f"shape {master.shape}")
    if subjectim.ndim != 2:
        raise DataFormatError(path, "subjectim of shape (n_subjects, 10000)", f"shape {subjectim.shape}")
    if stim.ndim != 3:
        raise DataFormatError(path, "stimpattern of shape (sessions, runs, slots)", f"shape {stim.shape}")
    if not np.isin(stim, (0, 1)).all():
        raise DataFormatError(path, "stimpattern values 0/1", f"values {np.unique(stim)[:10].tolist()}")
    master = master[0]
    if master.min() < 1 or master.max() > subjectim.shape[1]:
        raise DataFormatError(path, f"masterordering in 1..{subjectim.shape[1]}",
                              f"range {master.min()}..{master.max()}")
    if subjectim.min() < 1:
        raise DataFormatError(path, "subjectim 1-based (>= 1)", f"minimum {subjectim.min()}")
    return ExpDesign(
        masterordering=master,
        subjectim=subjectim,
        sharedix=fields["sharedix"].reshape(-1),
        stimpattern=stim.astype(bool),
    )


# --------------------------------------------------------------------------- responses


def read_responses(path: str | os.PathLike) -> pd.DataFrame:
    """Read a subject's ``responses.tsv``: one row per stimulus trial in time order.

    Returns a DataFrame with the columns of :data:`RESPONSE_COLUMNS` (float64, NaN for
    missing; id/counter columns int64). Checks columns, numeric content and time order.
    """
    path = Path(path)
    require_file(path, "the behavioural responses file responses.tsv")
    try:
        table = pd.read_csv(path, sep="\t", na_values=["NaN", "nan", ""], keep_default_na=False)
    except Exception as exc:
        raise DataFormatError(path, "a tab-separated table", f"unreadable ({type(exc).__name__}: {exc})") from exc
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in RESPONSE_COLUMNS if c not in table.columns]
    if missing:
        raise DataFormatError(path, f"columns {list(RESPONSE_COLUMNS)}", f"missing {missing}")
    if len(table) == 0:
        raise DataFormatError(path, "at least one trial row", "no rows")
    out = {}
    for col in RESPONSE_COLUMNS:
        values = pd.to_numeric(table[col], errors="coerce")
        bad = values.isna() & table[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataFormatError(path, f"numbers in column {col}",
                                  f"{table[col].iloc[row]!r} in data row {row + 1}")
        values = values.to_numpy(dtype=np.float64)
        if col in _RESPONSE_INT_COLUMNS:
            if np.isnan(values).any() or np.any(values != np.round(values)):
                raise DataFormatError(path, f"whole numbers in column {col}", "NaN or fractions")
            values = values.astype(np.int64)
        out[col] = values
    frame = pd.DataFrame(out)
    for col in ("SESSION", "RUN", "TRIAL", "73KID", "10KID"):
        if frame[col].min() < 1:
            raise DataFormatError(path, f"1-based values in {col}", f"minimum {frame[col].min()}")
    order = frame["SESSION"].to_numpy() * 10_000_000 + frame["RUN"].to_numpy() * 10_000 + frame["TRIAL"].to_numpy()
    if np.any(np.diff(order) <= 0):
        row = int(np.flatnonzero(np.diff(order) <= 0)[0]) + 1
        raise DataFormatError(path, "rows in time order (SESSION, RUN, TRIAL increasing)",
                              f"out of order at data row {row + 1}")
    return frame


# --------------------------------------------------------------------------- betas


def read_ncsnr(path: str | os.PathLike, n_vertices: int | None = None) -> np.ndarray:
    """Read ``{lh,rh}.ncsnr.mgh``: float32 [V] (NaN kept)."""
    return read_surface_values(path, n_vertices)


# --------------------------------------------------------------------------- stimuli


class NSDStimuli:
    """Lazy reader of ``nsd_stimuli.hdf5`` (dataset ``imgBrick``, uint8 [73000, H, W, 3]).

    Use as a context manager; ``stimuli[ids]`` reads only the rows asked for (0-based 73k ids,
    any order) and returns uint8 [len(ids), H, W, 3].
    """

    def __init__(self, path: str | os.PathLike):
        import h5py

        self.path = Path(path)
        require_file(self.path, "the NSD stimulus file nsd_stimuli.hdf5")
        try:
            self._file = h5py.File(self.path, "r")
        except Exception as exc:
            raise DataFormatError(self.path, "an HDF5 file", f"unreadable ({type(exc).__name__}: {exc})") from exc
        try:
            if "imgBrick" not in self._file:
                raise DataFormatError(self.path, "dataset 'imgBrick'", f"keys {list(self._file.keys())}")
            self._brick = self._file["imgBrick"]
            shape, dtype = self._brick.shape, self._brick.dtype
            if len(shape) != 4 or shape[3] != 3 or dtype != np.uint8:
                raise DataFormatError(self.path, "imgBrick uint8 (n, H, W, 3)", f"{dtype} {shape}")
        except Exception as exc:  # h5py raises RuntimeError, KeyError, OSError ... on damaged metadata (HDF5 itself
            # refuses a contiguous dataset larger than the file)
            self._file.close()
            if isinstance(exc, DataFormatError):
                raise
            raise DataFormatError(self.path, "readable HDF5 metadata with dataset 'imgBrick'",
                                  f"{type(exc).__name__}: {exc}") from None
        self.shape: tuple[int, int, int, int] = tuple(int(s) for s in shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, ids) -> np.ndarray:
        ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        if ids.size and (ids.min() < 0 or ids.max() >= self.shape[0]):
            raise DataFormatError(self.path, f"73k ids below {self.shape[0]}", f"id {ids.max()}")
        order = np.argsort(ids, kind="stable")
        uniq, inverse = np.unique(ids[order], return_inverse=True)
        try:
            rows = self._brick[uniq.tolist()] if uniq.size else np.zeros((0,) + self.shape[1:], np.uint8)
        except Exception as exc:
            raise DataFormatError(self.path, "readable imgBrick rows", f"{type(exc).__name__}: {exc}") from exc
        out = np.empty((ids.size,) + self.shape[1:], dtype=np.uint8)
        out[order] = rows[inverse]
        return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> NSDStimuli:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_stim_info(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``nsd_stim_info_merged.csv``; ``nsdId`` 0-based, ``shared1000`` as bool, rep columns 1-based."""
    path = Path(path)
    require_file(path, "nsd_stim_info_merged.csv")
    try:
        table = pd.read_csv(path, index_col=0)
    except Exception as exc:
        raise DataFormatError(path, "a CSV table", f"unreadable ({type(exc).__name__}: {exc})") from exc
    for col in ("cocoId", "nsdId", "shared1000"):
        if col not in table.columns:
            raise DataFormatError(path, f"column {col}", f"columns {list(table.columns)[:12]}")
    if table["shared1000"].dtype != bool:
        text = table["shared1000"].astype(str).str.strip()
        if not text.isin(["True", "False"]).all():
            raise DataFormatError(path, "shared1000 'True'/'False'", f"values {sorted(set(text))[:5]}")
        table["shared1000"] = text == "True"
    nsd_id = pd.to_numeric(table["nsdId"], errors="coerce")
    if nsd_id.isna().any() or (nsd_id < 0).any():
        raise DataFormatError(path, "0-based integer nsdId", "missing or negative ids")
    table["nsdId"] = nsd_id.astype(np.int64)
    return table
