"""Readers of the FreeSurfer file formats NSD ships: MGH / MGZ, surfaces, patches, label maps.

Each reader knows one file format, validates what it reads and raises
:class:`brainnet.errors.DataFormatError` naming the file on anything unexpected. Where the NSD
files lie is :class:`brainnet.data.formats.nsd.NSDLayout`'s business.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainnet.errors import DataFormatError

#: Bytes before the data block of an uncompressed ``.mgh`` file.
MGH_DATA_OFFSET = 284


def require_file(path: Path, what: str) -> None:
    """DataFormatError naming ``path`` when it is not a file."""
    if not path.is_file():
        raise DataFormatError(path, what, "no such file")


@dataclass(frozen=True)
class FsaverageFolder:
    """Paths inside a FreeSurfer fsaverage subject folder (``$FREESURFER_HOME/subjects/fsaverage``
    or NSD's copy ``nsddata/freesurfer/fsaverage``): ``surf/?h.<surf>``, ``label/?h.<atlas>.mgz``."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    def surface(self, hemi: str, surf: str) -> Path:
        return self.root / "surf" / f"{hemi}.{surf}"

    def flat_patch(self, hemi: str) -> Path:
        return self.root / "surf" / f"{hemi}.full.flat.patch.3d"

    def label(self, hemi: str, atlas: str) -> Path:
        return self.root / "label" / f"{hemi}.{atlas}.mgz"

    def ctab(self, atlas: str) -> Path:
        return self.root / "label" / f"{atlas}.mgz.ctab"


# --------------------------------------------------------------------------- MGH / MGZ


@dataclass(frozen=True)
class MGHInfo:
    """Header facts of an MGH file: ``shape`` (4 dims), numpy ``dtype`` of the stored data."""

    shape: tuple[int, int, int, int]
    dtype: np.dtype


def mgh_info(path: str | os.PathLike) -> MGHInfo:
    """Read only the header of an ``.mgh``/``.mgz`` file; for ``.mgh`` also check the file is complete."""
    import nibabel as nib

    path = Path(path)
    require_file(path, "an MGH file")
    try:
        img = nib.load(str(path))
        shape = tuple(int(d) for d in img.header["dims"])
        dtype = np.dtype(img.header.get_data_dtype())
    except Exception as exc:
        raise DataFormatError(path, "an MGH/MGZ file", f"unreadable header ({type(exc).__name__}: {exc})") from exc
    if path.suffix == ".mgh":
        needed = MGH_DATA_OFFSET + int(np.prod(shape)) * dtype.itemsize
        size = path.stat().st_size
        if size < needed:
            raise DataFormatError(path, f"{needed} bytes for data of shape {shape}", f"{size} bytes (truncated)")
    return MGHInfo(shape=shape, dtype=dtype)


def read_mgh_data(path: Path) -> np.ndarray:
    import nibabel as nib

    try:
        return np.asarray(nib.load(str(path)).dataobj)
    except Exception as exc:
        raise DataFormatError(path, "readable MGH data", f"{type(exc).__name__}: {exc}") from exc


def read_surface_values(path: str | os.PathLike, n_vertices: int | None = None) -> np.ndarray:
    """Read a per-vertex map stored as MGH/MGZ of shape (V, 1, 1, 1): float32 [V]."""
    path = Path(path)
    info = mgh_info(path)
    if info.shape[1:] != (1, 1, 1):
        raise DataFormatError(path, "shape (n_vertices, 1, 1, 1)", f"shape {info.shape}")
    if n_vertices is not None and info.shape[0] != n_vertices:
        raise DataFormatError(path, f"{n_vertices} vertices", f"{info.shape[0]} vertices")
    return read_mgh_data(path).reshape(-1).astype(np.float32)


# --------------------------------------------------------------------------- labels


def read_ctab(path: str | os.PathLike) -> dict[int, str]:
    """Read a ``<atlas>.mgz.ctab`` text table (``<int> <name>`` per line, first ``0 Unknown``)."""
    path = Path(path)
    require_file(path, "a label colour table (.ctab)")
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, "a text file", "binary content") from exc
    table: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or not re.fullmatch(r"-?\d+", parts[0]):
            raise DataFormatError(path, "lines '<int> <name>'", f"line {number}: {line.strip()!r}")
        code = int(parts[0])
        if code in table:
            raise DataFormatError(path, "unique codes", f"code {code} twice (line {number})")
        table[code] = parts[1]
    if table.get(0) is None:
        raise DataFormatError(path, "a first entry '0 Unknown'", f"codes {sorted(table)[:5]}")
    return table


def read_label(mgz_path: str | os.PathLike, ctab_path: str | os.PathLike,
               n_vertices: int | None = None) -> tuple[np.ndarray, dict[int, str]]:
    """Read an fsaverage label map ``?h.<atlas>.mgz`` with its ``<atlas>.mgz.ctab``.

    Returns:
        codes: int16 [V] integer label per vertex; names: {code: name} from the ctab
        (every code present in the map is checked to be in the table).
    """
    mgz_path = Path(mgz_path)
    names = read_ctab(ctab_path)
    values = read_surface_values(mgz_path, n_vertices)
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        raise DataFormatError(mgz_path, "integer label values", "NaN or fractional values")
    codes = values.astype(np.int64)
    unknown = sorted(set(np.unique(codes).tolist()) - set(names))
    if unknown:
        raise DataFormatError(ctab_path, f"entries for every code in {mgz_path.name}", f"codes {unknown} missing")
    if codes.min() < 0 or codes.max() > np.iinfo(np.int16).max:
        raise DataFormatError(mgz_path, "label codes in 0..32767", f"range {codes.min()}..{codes.max()}")
    return codes.astype(np.int16), names


# --------------------------------------------------------------------------- surfaces


def read_surface(path: str | os.PathLike, n_vertices: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a FreeSurfer triangle surface (``?h.sphere``, ``inflated``, ``white``, ...).

    Returns:
        coords float32 [V, 3], faces int32 [F, 3].
    """
    import nibabel.freesurfer as fs

    path = Path(path)
    require_file(path, "a FreeSurfer surface")
    try:
        coords, faces = fs.read_geometry(str(path))
    except Exception as exc:
        raise DataFormatError(path, "a FreeSurfer triangle surface",
                              f"unreadable ({type(exc).__name__}: {exc})") from exc
    coords = np.asarray(coords, dtype=np.float32)
    faces = np.asarray(faces)
    if coords.ndim != 2 or coords.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise DataFormatError(path, "coords (V, 3) and faces (F, 3)", f"{coords.shape} and {faces.shape}")
    if n_vertices is not None and coords.shape[0] != n_vertices:
        raise DataFormatError(path, f"{n_vertices} vertices", f"{coords.shape[0]} vertices")
    if faces.size and (faces.min() < 0 or faces.max() >= coords.shape[0]) or not np.all(np.isfinite(coords)):
        raise DataFormatError(path, "finite coordinates and faces indexing the vertices", "out-of-range faces or NaN")
    return coords, faces.astype(np.int32)


def read_morph(path: str | os.PathLike, n_vertices: int | None = None) -> np.ndarray:
    """Read a FreeSurfer per-vertex morph file (``?h.sulc``, ``?h.curv``): float32 [V]."""
    import nibabel.freesurfer as fs

    path = Path(path)
    require_file(path, "a FreeSurfer morph file")
    try:
        values = np.asarray(fs.read_morph_data(str(path)), dtype=np.float32)
    except Exception as exc:
        raise DataFormatError(path, "a FreeSurfer morph file", f"unreadable ({type(exc).__name__}: {exc})") from exc
    if n_vertices is not None and values.shape != (n_vertices,):
        raise DataFormatError(path, f"{n_vertices} values", f"shape {values.shape}")
    return values


def read_patch(path: str | os.PathLike, n_vertices: int) -> np.ndarray:
    """Read a FreeSurfer patch (``?h.full.flat.patch.3d``) onto the full mesh.

    Returns:
        float32 [n_vertices, 3]: patch coordinates, NaN for vertices cut from the patch.
    """
    path = Path(path)
    require_file(path, "a FreeSurfer patch file")
    raw = path.read_bytes()
    if len(raw) < 8:
        raise DataFormatError(path, "a FreeSurfer patch header", f"{len(raw)} bytes")
    version, n_points = np.frombuffer(raw[:8], dtype=">i4")
    record = np.dtype([("vno", ">i4"), ("x", ">f4"), ("y", ">f4"), ("z", ">f4")])
    if version != -1 or n_points < 0 or len(raw) < 8 + n_points * record.itemsize:
        raise DataFormatError(path, "a FreeSurfer patch (version -1, n points, records)",
                              f"version {version}, {n_points} points, {len(raw)} bytes")
    rec = np.frombuffer(raw[8:8 + n_points * record.itemsize], dtype=record)
    vno = np.abs(rec["vno"].astype(np.int64)) - 1
    if vno.size and (vno.min() < 0 or vno.max() >= n_vertices):
        raise DataFormatError(path, f"vertex numbers in 1..{n_vertices}", f"range {vno.min() + 1}..{vno.max() + 1}")
    coords = np.full((n_vertices, 3), np.nan, dtype=np.float32)
    coords[vno, 0], coords[vno, 1], coords[vno, 2] = rec["x"], rec["y"], rec["z"]
    return coords
