"""Reader of NIfTI-1 volumes (``.nii`` / ``.nii.gz``): the one owner of the format in brainnet.

NSD's subject-space files use it: ROI label volumes (``func1mm/roi/*.nii.gz``), per-session 4-D betas
and the ncsnr map. The header is parsed by nibabel; the data of a 4-D file is streamed frame by
frame from the (gzip) stream, so reading the voxels inside a mask never holds more than one chunk
of frames besides the output. Every function raises :class:`brainnet.errors.DataFormatError`
naming the file on anything unexpected (unreadable header, wrong shape or affine, truncated data,
non-integer labels).

Voxel order: brainnet indexes a volume of shape (X, Y, Z) by the flat C-order index
``(i * Y + j) * Z + k`` (``np.ravel_multi_index``); the file stores Fortran order (i fastest),
which this module converts.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainnet.data.formats.freesurfer import require_bytes, require_file
from brainnet.errors import DataFormatError

#: The first header field of every NIfTI-1 file (its length; its byte order gives the file's).
NIFTI1_SIZEOF_HDR = 348
#: Largest difference between two affines (mm) still taken as the same grid.
AFFINE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class NiftiInfo:
    """Header facts of one NIfTI-1 file.

    Attributes:
        path: the file; shape: all dimensions (3 or 4); affine: float64 [4, 4] voxel -> scanner mm
            (sform, else qform); dtype: on-disk dtype (file byte order); slope, inter: scaling
            (value = raw * slope + inter; 1 and 0 when the header sets none); offset: byte offset of
            the data in the (uncompressed) stream; compressed: gzip file.
    """

    path: Path
    shape: tuple[int, ...]
    affine: np.ndarray
    dtype: np.dtype
    slope: float
    inter: float
    offset: int
    compressed: bool

    @property
    def grid(self) -> tuple[int, int, int]:
        """The spatial shape (X, Y, Z)."""
        return tuple(self.shape[:3])

    @property
    def n_frames(self) -> int:
        """Frames of a 4-D file (1 for a 3-D one)."""
        return int(self.shape[3]) if len(self.shape) > 3 else 1


def _open(path: Path, compressed: bool):
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def nifti_info(path: str | os.PathLike) -> NiftiInfo:
    """Parse the header of a NIfTI-1 file (gzip or not) without reading its data."""
    import nibabel as nib

    path = Path(path)
    require_file(path, "a NIfTI volume")
    with open(path, "rb") as fh:
        compressed = fh.read(2) == b"\x1f\x8b"
    try:
        with _open(path, compressed) as fh:
            sizeof_hdr = fh.read(4)
            fh.seek(0)
            header = nib.Nifti1Header.from_fileobj(fh, check=True)
    except Exception as exc:  # nibabel raises several types for a bad header
        raise DataFormatError(path, "a NIfTI-1 header", f"unreadable ({type(exc).__name__}: {exc})") from None
    if sizeof_hdr not in (NIFTI1_SIZEOF_HDR.to_bytes(4, "little"), NIFTI1_SIZEOF_HDR.to_bytes(4, "big")):
        # nibabel takes the byte order from this field and silently "fixes" a wrong value
        raise DataFormatError(path, f"a NIfTI-1 header (sizeof_hdr {NIFTI1_SIZEOF_HDR})", f"bytes {sizeof_hdr.hex()}")
    shape = tuple(int(s) for s in header.get_data_shape())
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise DataFormatError(path, "a 3-D or 4-D volume", f"shape {shape}")
    slope, inter = header.get_slope_inter()
    affine = np.asarray(header.get_best_affine(), np.float64)
    if not np.isfinite(affine).all():
        raise DataFormatError(path, "a finite affine", f"{affine.tolist()}")
    dtype, offset = header.get_data_dtype(), int(header.get_data_offset())
    require_bytes(path, offset + int(np.prod(shape, dtype=object)) * dtype.itemsize, compressed,
                  f"{dtype} data of shape {shape} from byte {offset}")
    return NiftiInfo(path=path, shape=shape, affine=affine, dtype=dtype,
                     slope=1.0 if slope is None else float(slope), inter=0.0 if inter is None else float(inter),
                     offset=offset, compressed=compressed)


def check_grid(info: NiftiInfo, grid: tuple[int, int, int], affine: np.ndarray, reference: str | os.PathLike) -> None:
    """Raise :class:`DataFormatError` (naming ``info.path``) unless its grid is ``grid`` with ``affine``
    (the grid of ``reference``, named in the message)."""
    name = Path(reference).name
    if info.grid != tuple(grid):
        raise DataFormatError(info.path, f"grid {tuple(grid)} (as {name})", f"grid {info.grid}")
    if np.abs(info.affine - np.asarray(affine)).max() > AFFINE_TOLERANCE:
        raise DataFormatError(info.path, f"the affine of {name} {np.round(affine, 4).tolist()}",
                              f"affine {np.round(info.affine, 4).tolist()}")


def read_masked(path: str | os.PathLike, index: np.ndarray, grid: tuple[int, int, int] | None = None,
                affine: np.ndarray | None = None, n_frames: int | None = None, scale: float = 1.0,
                frames_per_chunk: int = 32, out: np.ndarray | None = None, reference=None) -> np.ndarray:
    """Stream the voxels ``index`` of every frame of a 3-D / 4-D volume.

    Args:
        index: int [n] flat C-order voxel indices into the (X, Y, Z) grid.
        grid, affine: expected grid and affine (checked when given; ``reference`` names their source).
        n_frames: expected frames (checked when given).
        scale: values are ``(raw * slope + inter) / scale`` (NSD func1mm betas: 300).
        frames_per_chunk: frames decoded at a time (memory: one chunk of whole volumes).
        out: optional float32 [n, T] to fill.

    Returns:
        float32 [n, T] (T = 1 for a 3-D volume).
    """
    info = nifti_info(path)
    if grid is not None:
        check_grid(info, grid, info.affine if affine is None else affine, reference or "the expected grid")
    n_t = info.n_frames
    if n_frames is not None and n_t != n_frames:
        raise DataFormatError(info.path, f"{n_frames} frames (trials)", f"{n_t} frames")
    index = np.asarray(index, np.int64)
    n_vox = int(np.prod(info.grid))
    if index.size and (index.min() < 0 or index.max() >= n_vox):
        raise DataFormatError(info.path, f"voxel indices below {n_vox}", f"index {index.max()}")
    fortran = np.ravel_multi_index(np.unravel_index(index, info.grid), info.grid, order="F")
    if out is None:
        out = np.empty((index.size, n_t), np.float32)
    elif out.shape != (index.size, n_t) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {(index.size, n_t)}, got {out.dtype} {out.shape}")
    frame_bytes = n_vox * info.dtype.itemsize
    try:
        with _open(info.path, info.compressed) as fh:
            fh.seek(info.offset)
            for a in range(0, n_t, frames_per_chunk):
                b = min(a + frames_per_chunk, n_t)
                buf = fh.read((b - a) * frame_bytes)
                if len(buf) != (b - a) * frame_bytes:
                    raise DataFormatError(info.path, f"{n_t} frames of {n_vox} {info.dtype} values",
                                          f"a truncated data block (frames {a}..{b - 1})")
                vals = np.frombuffer(buf, dtype=info.dtype).reshape(b - a, n_vox)[:, fortran].T.astype(np.float32)
                if info.slope != 1.0 or info.inter != 0.0:
                    vals = vals * np.float32(info.slope) + np.float32(info.inter)
                if scale != 1.0:
                    vals /= np.float32(scale)
                out[:, a:b] = vals
            extra = sum(len(chunk) for chunk in iter(lambda: fh.read(1 << 20), b""))  # gzip: checks CRC, length
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(info.path, "a readable data stream", f"{type(exc).__name__}: {exc}") from None
    if extra:
        raise DataFormatError(info.path, f"{n_t} frames of {n_vox} {info.dtype} values from byte {info.offset}",
                              f"{extra} more bytes after them (a wrong datatype or dimension in the header?)")
    return out


def read_volume(path: str | os.PathLike, grid: tuple[int, int, int] | None = None, affine: np.ndarray | None = None,
                reference=None) -> tuple[np.ndarray, NiftiInfo]:
    """A 3-D volume as float32 [X, Y, Z] (C-indexable, scaling applied) and its header facts."""
    info = nifti_info(path)
    if info.n_frames != 1:
        raise DataFormatError(info.path, "a 3-D volume", f"shape {info.shape}")
    flat = read_masked(path, np.arange(int(np.prod(info.grid))), grid, affine, reference=reference)
    return flat[:, 0].reshape(info.grid), info


def read_labels(path: str | os.PathLike, n_labels: int | None = None, grid: tuple[int, int, int] | None = None,
                affine: np.ndarray | None = None, reference=None) -> tuple[np.ndarray, NiftiInfo]:
    """An integer label volume: int64 [X, Y, Z] (0 = unlabelled) and its header facts.

    Raises DataFormatError for non-integer, negative or (given ``n_labels``) too large labels, and
    for a volume without any labelled voxel.
    """
    values, info = read_volume(path, grid, affine, reference)
    finite = np.isfinite(values)
    if not finite.all() or np.any(values != np.round(values)) or values.min() < 0:
        raise DataFormatError(info.path, "non-negative integer labels", "NaN, negative or fractional values")
    labels = values.astype(np.int64)
    if n_labels is not None and labels.max() > n_labels:
        raise DataFormatError(info.path, f"labels 0..{n_labels}", f"label {labels.max()}")
    if not labels.any():
        raise DataFormatError(info.path, "at least one labelled voxel", "an all-zero mask")
    return labels, info
