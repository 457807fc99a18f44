"""Readers for the Algonauts 2023 challenge tree (root = the folder holding subj01..subj08).

Image files are named ``train-NNNN_nsd-NNNNN.png`` / ``test-NNNN_nsd-NNNNN.png``: NNNN is a
1-based row counter, NNNNN the 0-based NSD 73k id. ROI masks are ``.npy`` arrays over the
fsaverage vertices; ``mapping_<class>.npy`` holds a pickled ``{code: name}`` dict, read without running pickle code
(:mod:`brainnet.data.formats.safe_pickle`).
Every reader raises :class:`brainnet.errors.DataFormatError` naming the file on bad content.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainnet.data.formats.safe_pickle import load_object_npy
from brainnet.data.layout import subject_name
from brainnet.errors import DataFormatError

#: ROI classes with fsaverage-space masks in ``roi_masks/``.
ROI_CLASSES: tuple[str, ...] = (
    "prf-visualrois", "floc-bodies", "floc-faces", "floc-places", "floc-words", "streams",
)

_IMAGE_NAME = re.compile(r"(train|test)-(\d{4,})_nsd-(\d{5})\.png")


@dataclass(frozen=True)
class AlgonautsLayout:
    """Paths of one subject's files below the Algonauts root."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    def subject_dir(self, subject: int | str) -> Path:
        return self.root / subject_name(subject)

    def training_fmri(self, subject: int | str, hemi: str) -> Path:
        return self.subject_dir(subject) / "training_split/training_fmri" / f"{hemi}_training_fmri.npy"

    def image_dir(self, subject: int | str, split: str) -> Path:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        sub = "training_split/training_images" if split == "train" else "test_split/test_images"
        return self.subject_dir(subject) / sub

    def all_vertices_mask(self, subject: int | str, hemi: str) -> Path:
        return self.subject_dir(subject) / "roi_masks" / f"{hemi}.all-vertices_fsaverage_space.npy"

    def roi_mask(self, subject: int | str, hemi: str, roi_class: str, space: str = "fsaverage") -> Path:
        return self.subject_dir(subject) / "roi_masks" / f"{hemi}.{roi_class}_{space}_space.npy"

    def roi_mapping(self, subject: int | str, roi_class: str) -> Path:
        return self.subject_dir(subject) / "roi_masks" / f"mapping_{roi_class}.npy"

    def subjects(self) -> list[str]:
        """Subject folders present (``subjXX``), sorted."""
        if not self.root.is_dir():
            raise DataFormatError(self.root, "the Algonauts 2023 folder (holding subj01..)", "no such folder")
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and re.fullmatch(r"subj\d\d", p.name))


def _load_npy(path: Path, what: str):
    if not path.is_file():
        raise DataFormatError(path, what, "no such file")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as exc:
        raise DataFormatError(path, what, f"unreadable ({type(exc).__name__}: {exc})") from exc


def read_training_fmri(path: str | os.PathLike, n_images: int | None = None,
                       n_vertices: int | None = None) -> np.ndarray:
    """Open ``{lh,rh}_training_fmri.npy`` memory-mapped: float32 [n_images, n_vertices].

    ``n_images`` / ``n_vertices`` are checked when given (rows = training images, columns =
    the all-vertices mask in ascending order).
    """
    path = Path(path)
    arr = _load_npy(path, "a float32 (n_images, n_vertices) .npy")
    if arr.ndim != 2 or arr.dtype.kind != "f":
        raise DataFormatError(path, "a float (n_images, n_vertices) array", f"{arr.dtype} {arr.shape}")
    if n_images is not None and arr.shape[0] != n_images:
        raise DataFormatError(path, f"{n_images} rows (one per training image)", f"{arr.shape[0]} rows")
    if n_vertices is not None and arr.shape[1] != n_vertices:
        raise DataFormatError(path, f"{n_vertices} columns (the all-vertices mask)", f"{arr.shape[1]} columns")
    return arr


@dataclass(frozen=True)
class ImageListing:
    """The PNG files of one image folder, ordered by their 1-based counter.

    Attributes:
        paths: the files, row order.
        counter: int64 [n], the 1-based NNNN field (1..n).
        nsd_ids: int64 [n], the 0-based 73k id of each row.
    """

    paths: tuple[Path, ...]
    counter: np.ndarray
    nsd_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


def list_images(folder: str | os.PathLike, kind: str) -> ImageListing:
    """Parse the ``<kind>-NNNN_nsd-NNNNN.png`` names in ``folder`` (``kind`` = train / test).

    Checks every name, that counters run 1..n without gaps and that each 73k id occurs once.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(folder, f"a folder of {kind}-NNNN_nsd-NNNNN.png images", "no such folder")
    entries = []
    for path in folder.iterdir():
        if path.name.startswith("."):
            continue
        match = _IMAGE_NAME.fullmatch(path.name)
        if match is None or match.group(1) != kind:
            raise DataFormatError(path, f"a file named {kind}-NNNN_nsd-NNNNN.png", f"name {path.name!r}")
        entries.append((int(match.group(2)), int(match.group(3)), path))
    entries.sort()
    counter = np.array([e[0] for e in entries], dtype=np.int64)
    ids = np.array([e[1] for e in entries], dtype=np.int64)
    if not np.array_equal(counter, np.arange(1, len(entries) + 1)):
        raise DataFormatError(folder, f"{kind} counters 1..{len(entries)}",
                              f"counters {counter[:3].tolist()}..{counter[-3:].tolist()}")
    if len(np.unique(ids)) != len(ids):
        raise DataFormatError(folder, "each NSD id once", "repeated NSD ids")
    return ImageListing(paths=tuple(e[2] for e in entries), counter=counter, nsd_ids=ids)


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file to uint8 [H, W, 3] (RGB)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "a PNG image", "no such file")
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
    except Exception as exc:
        raise DataFormatError(path, "a readable PNG image", f"{type(exc).__name__}: {exc}") from exc
    return np.asarray(rgb, dtype=np.uint8)


def read_vertex_mask(path: str | os.PathLike, n_vertices: int | None = None) -> np.ndarray:
    """Read ``{lh,rh}.all-vertices_fsaverage_space.npy`` (0/1 over the mesh): bool [n_vertices]."""
    path = Path(path)
    arr = np.asarray(_load_npy(path, "a 0/1 vertex mask .npy"))
    if arr.ndim != 1 or arr.dtype.kind not in "iubf":
        raise DataFormatError(path, "a 1-d 0/1 array", f"{arr.dtype} {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise DataFormatError(path, "values 0/1", f"values {np.unique(arr)[:5].tolist()}")
    if n_vertices is not None and arr.size != n_vertices:
        raise DataFormatError(path, f"{n_vertices} vertices", f"{arr.size} values")
    return arr.astype(bool)


def read_roi_mask(path: str | os.PathLike, n_vertices: int | None = None) -> np.ndarray:
    """Read a ROI label array ``{hemi}.<class>_<space>_space.npy``: int16 [n] (0 = none)."""
    path = Path(path)
    arr = np.asarray(_load_npy(path, "an integer ROI label .npy"))
    if arr.ndim != 1 or arr.dtype.kind not in "iubf":
        raise DataFormatError(path, "a 1-d integer label array", f"{arr.dtype} {arr.shape}")
    if arr.dtype.kind == "f" and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
        raise DataFormatError(path, "integer labels", "fractional or NaN values")
    if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.int16).max):
        raise DataFormatError(path, "labels in 0..32767", f"range {arr.min()}..{arr.max()}")
    if n_vertices is not None and arr.size != n_vertices:
        raise DataFormatError(path, f"{n_vertices} values", f"{arr.size} values")
    return arr.astype(np.int16)


def read_roi_mapping(path: str | os.PathLike) -> dict[int, str]:
    """Read ``mapping_<class>.npy``: a pickled ``{int code: name}`` dict including ``0``."""
    path = Path(path)
    obj = load_object_npy(path, "a pickled {code: name} dict")
    if not isinstance(obj, dict):
        raise DataFormatError(path, "a pickled dict {code: name}", f"{type(obj).__name__}")
    out: dict[int, str] = {}
    for key, value in obj.items():
        try:
            code = int(key)
        except (TypeError, ValueError):
            raise DataFormatError(path, "integer codes", f"key {key!r}") from None
        if code != key or not isinstance(value, str) or code < 0:
            raise DataFormatError(path, "{non-negative int: str}", f"item {key!r}: {value!r}")
        out[code] = value
    if 0 not in out:
        raise DataFormatError(path, "code 0 ('Unknown')", f"codes {sorted(out)[:5]}")
    return out
