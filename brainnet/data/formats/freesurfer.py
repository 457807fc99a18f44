"""Readers of the FreeSurfer file formats NSD ships: MGH / MGZ, surfaces, patches, label maps.

Each reader knows one file format, validates what it reads and raises
:class:`brainnet.errors.DataFormatError` naming the file on anything unexpected. Where the NSD
files lie is :class:`brainnet.data.formats.nsd.NSDLayout`'s business.
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainnet.errors import DataFormatError

#: Bytes before the data block of an uncompressed ``.mgh`` file.
MGH_DATA_OFFSET = 284
#: Largest ratio of a DEFLATE (gzip) stream's unpacked to packed size (RFC 1951: 258 bytes per 2 bits).
MAX_DEFLATE_RATIO = 1032
#: First bytes of a FreeSurfer triangle surface and of a "new" (float) morph file.
TRIANGLE_MAGIC = b"\xff\xff\xfe"
MORPH_MAGIC = b"\xff\xff\xff"
#: Bytes before the values of a new-format morph file (magic, vertices, faces, values per vertex).
MORPH_DATA_OFFSET = 15


def require_file(path: Path, what: str) -> None:
    """DataFormatError naming ``path`` when it is not a file."""
    if not path.is_file():
        raise DataFormatError(path, what, "no such file")


def require_bytes(path: Path, needed: int, compressed: bool, what: str) -> None:
    """DataFormatError naming ``path`` when its (gunzipped) stream cannot hold ``needed`` bytes (header +
    data as the header declares them), checked before anything that size is allocated. A gzip file is
    bounded by DEFLATE's largest ratio (:data:`MAX_DEFLATE_RATIO`), an uncompressed one by its size."""
    size = path.stat().st_size
    limit = size * MAX_DEFLATE_RATIO if compressed else size
    if needed > limit:
        found = f"a {'gzip ' if compressed else ''}file of {size} bytes"
        raise DataFormatError(path, f"{needed} bytes for {what}", found + (" (cannot hold them)" if compressed else
                                                                            " (truncated)"))


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
    """Read only the header of an ``.mgh``/``.mgz`` file and check the file can hold the data it declares
    (``.mgh``: is complete; ``.mgz``: see :func:`require_bytes`)."""
    import nibabel as nib

    path = Path(path)
    require_file(path, "an MGH file")
    try:
        img = nib.load(str(path))
        shape = tuple(int(d) for d in img.header["dims"])
        dtype = np.dtype(img.header.get_data_dtype())
    except Exception as exc:
        raise DataFormatError(path, "an MGH/MGZ file", f"unreadable header ({type(exc).__name__}: {exc})") from exc
    if min(shape) < 0:
        raise DataFormatError(path, "an MGH header with dimensions >= 0", f"dimensions {shape}")
    needed = MGH_DATA_OFFSET + int(np.prod(shape, dtype=object)) * dtype.itemsize
    require_bytes(path, needed, path.suffix != ".mgh", f"{dtype} data of shape {shape}")
    return MGHInfo(shape=shape, dtype=dtype)


def read_mgh_data(path: Path) -> np.ndarray:
    """All data of an MGH / MGZ file (an ``.mgz`` is read to its end, so a truncated or damaged gzip
    stream is refused even where the data come before the damage)."""
    import nibabel as nib

    try:
        data = np.asarray(nib.load(str(path)).dataobj)
        if path.suffix != ".mgh":
            with gzip.open(path, "rb") as fh:
                while fh.read(1 << 20):
                    pass
        return data
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
    n_vert, n_faces = _triangle_counts(path)
    try:
        coords, faces = fs.read_geometry(str(path))
    except Exception as exc:
        raise DataFormatError(path, "a FreeSurfer triangle surface",
                              f"unreadable ({type(exc).__name__}: {exc})") from exc
    coords = np.asarray(coords, dtype=np.float32)
    faces = np.asarray(faces)
    if coords.shape != (n_vert, 3) or faces.shape != (n_faces, 3):
        raise DataFormatError(path, "coords (V, 3) and faces (F, 3)", f"{coords.shape} and {faces.shape}")
    if n_vertices is not None and coords.shape[0] != n_vertices:
        raise DataFormatError(path, f"{n_vertices} vertices", f"{coords.shape[0]} vertices")
    if faces.size and (faces.min() < 0 or faces.max() >= coords.shape[0]) or not np.all(np.isfinite(coords)):
        raise DataFormatError(path, "finite coordinates and faces indexing the vertices", "out-of-range faces or NaN")
    return coords, faces.astype(np.int32)


def _triangle_counts(path: Path) -> tuple[int, int]:
    """(vertices, faces) from a triangle surface's header, checked against the file size (nibabel
    takes a negative count as "read to the end" and reads whatever follows a too small one)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        magic = fh.read(3)
        fh.readline(), fh.readline()  # creation stamp, blank line
        counts = fh.read(8)
        start = fh.tell()
    if magic != TRIANGLE_MAGIC or len(counts) != 8:
        raise DataFormatError(path, "a FreeSurfer triangle surface (magic fffffe, stamp, counts)",
                              f"magic {magic.hex()}, {size} bytes")
    n_vert, n_faces = (int(n) for n in np.frombuffer(counts, ">i4"))
    if n_vert < 0 or n_faces < 0 or start + 12 * (n_vert + n_faces) > size:
        raise DataFormatError(path, f"{n_vert} vertices and {n_faces} faces ({start + 12 * (n_vert + n_faces)} bytes)",
                              f"{size} bytes")
    return n_vert, n_faces


def read_morph(path: str | os.PathLike, n_vertices: int | None = None) -> np.ndarray:
    """Read a FreeSurfer per-vertex morph file (``?h.sulc``, ``?h.curv``; the float format FreeSurfer has
    written since 2000, not the older int16 one): float32 [V]."""
    import nibabel.freesurfer as fs

    path = Path(path)
    require_file(path, "a FreeSurfer morph file")
    with open(path, "rb") as fh:
        head = fh.read(MORPH_DATA_OFFSET)
    size = path.stat().st_size
    n_values = int(np.frombuffer(head[3:7], ">i4")[0]) if len(head) == MORPH_DATA_OFFSET else -1
    if head[:3] != MORPH_MAGIC or n_values < 0 or size != MORPH_DATA_OFFSET + 4 * n_values:
        raise DataFormatError(path, "a FreeSurfer morph file (magic ffffff, n values, 4 bytes per value)",
                              f"magic {head[:3].hex()}, {n_values} values, {size} bytes")
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
    version, n_points = (int(n) for n in np.frombuffer(raw[:8], dtype=">i4"))  # Python ints: no overflow
    record = np.dtype([("vno", ">i4"), ("x", ">f4"), ("y", ">f4"), ("z", ">f4")])
    if version != -1 or n_points < 0 or len(raw) != 8 + n_points * record.itemsize:
        raise DataFormatError(path, "a FreeSurfer patch (version -1, n points, records)",
                              f"version {version}, {n_points} points, {len(raw)} bytes")
    rec = np.frombuffer(raw[8:8 + n_points * record.itemsize], dtype=record)
    vno = np.abs(rec["vno"].astype(np.int64)) - 1
    if vno.size and (vno.min() < 0 or vno.max() >= n_vertices):
        raise DataFormatError(path, f"vertex numbers in 1..{n_vertices}", f"range {vno.min() + 1}..{vno.max() + 1}")
    coords = np.full((n_vertices, 3), np.nan, dtype=np.float32)
    coords[vno, 0], coords[vno, 1], coords[vno, 2] = rec["x"], rec["y"], rec["z"]
    return coords
