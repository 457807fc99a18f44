"""Readers of NSD's per-session surface betas ``{lh,rh}.betas_sessionNN.mgh`` (V, 1, 1, T).

MGH stores such a file Fortran-ordered and big-endian: each trial is one block of V values, so a
session is trial-major on disk. :func:`read_betas` returns it vertex-major ([V, T]);
:func:`read_betas_trials` keeps it trial-major ([T, V]), the layout of the prepared ``fmri.npy``.
Both are re-exported by :mod:`brainnet.data.formats.nsd`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from brainnet.data.formats.blockread import read_blocks
from brainnet.data.formats.freesurfer import MGH_DATA_OFFSET, mgh_info, read_mgh_data
from brainnet.errors import DataFormatError

#: Trials of one file :func:`read_betas_trials` reads per step (4 x 160 KB for an fsaverage6 mesh: the
#: raw chunk and the picked vertices stay in cache while they are byte-swapped and summed).
FRAMES_PER_CHUNK = 4


def _betas_header(path: Path, rows: np.ndarray | None, n_vertices: int | None,
                  n_trials: int | None) -> tuple[np.dtype, int, int, np.ndarray]:
    """Check a betas file's header against the expected V and T: (stored dtype, V, T, rows as int64)."""
    info = mgh_info(path)
    n_vox, d1, d2, n_frames = info.shape
    if (d1, d2) != (1, 1):
        raise DataFormatError(path, "shape (n_vertices, 1, 1, n_trials)", f"shape {info.shape}")
    if n_vertices is not None and n_vox != n_vertices:
        raise DataFormatError(path, f"{n_vertices} vertices", f"{n_vox} vertices")
    if n_trials is not None and n_frames != n_trials:
        raise DataFormatError(path, f"{n_trials} trials (frames)", f"{n_frames} frames")
    rows = np.arange(n_vox) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n_vox):
        raise DataFormatError(path, f"vertex indices below {n_vox}", f"index {rows.max()}")
    return info.dtype, n_vox, n_frames, rows


def read_betas(path: str | os.PathLike, rows: np.ndarray | None = None, n_vertices: int | None = None,
               n_trials: int | None = None, frames_per_chunk: int = 64, out: np.ndarray | None = None) -> np.ndarray:
    """Read one session's betas ``{lh,rh}.betas_sessionNN.mgh`` (V, 1, 1, T).

    Args:
        rows: vertex indices to keep (None = all).
        n_vertices, n_trials: expected V and T (checked when given).
        frames_per_chunk: an uncompressed file is read this many trials at a time, so memory
            stays near ``len(rows) * T`` floats plus one chunk.
        out: optional float32 [len(rows), T] array to fill (no extra copy).

    Returns:
        float32 [len(rows), T], percent signal change, NaN where the source has NaN.
    """
    path = Path(path)
    dtype, n_vox, n_frames, rows = _betas_header(path, rows, n_vertices, n_trials)
    if out is None:
        out = np.empty((rows.size, n_frames), dtype=np.float32)
    elif out.shape != (rows.size, n_frames) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {(rows.size, n_frames)}, got {out.dtype} {out.shape}")
    if path.suffix != ".mgh":
        out[:] = read_mgh_data(path).reshape(n_vox, n_frames)[rows]
        return out
    # MGH stores (V, 1, 1, T) Fortran-ordered, big-endian: each trial is one block of V values.
    dtype = dtype.newbyteorder(">")
    with open(path, "rb") as fh:
        for start in range(0, n_frames, frames_per_chunk):
            stop = min(start + frames_per_chunk, n_frames)
            fh.seek(MGH_DATA_OFFSET + start * n_vox * dtype.itemsize)
            count = (stop - start) * n_vox
            block = np.fromfile(fh, dtype=dtype, count=count)
            if block.size != count:
                raise DataFormatError(path, f"{n_vox * n_frames} values", "a truncated data block")
            out[:, start:stop] = block.reshape(stop - start, n_vox)[:, rows].T
    return out


def read_betas_trials(path: str | os.PathLike, rows: np.ndarray, out: np.ndarray, n_vertices: int | None = None,
                      frames_per_chunk: int = FRAMES_PER_CHUNK) -> None:
    """Read one session's betas trial-major: ``out`` [T, len(rows)] (float32, may be a column block of a
    wider array) gets trial t's values of ``rows`` in row t (NaN where the source has NaN). Checks as
    :func:`read_betas`.

    An uncompressed file is read by :func:`~brainnet.data.formats.blockread.read_blocks` (past the page
    cache when the file is not cached) and handled ``frames_per_chunk`` trials at a time, its selected
    vertices picked and byte-swapped while that chunk is in cache: no [V, T] copy and no transpose (the
    file is trial-major too).
    """
    path = Path(path)
    dtype, n_vox, n_frames, rows = _betas_header(path, rows, n_vertices, out.shape[0])
    if out.shape != (n_frames, rows.size) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {(n_frames, rows.size)}, got {out.dtype} {out.shape}")
    if path.suffix != ".mgh":
        out[:] = read_mgh_data(path).reshape(n_vox, n_frames)[rows].T
        return
    dtype = dtype.newbyteorder(">")
    step = max(1, int(frames_per_chunk))
    frame_bytes = n_vox * dtype.itemsize
    native32 = dtype == np.dtype(">f4")
    blocks = read_blocks(path, MGH_DATA_OFFSET, n_frames * frame_bytes, step * frame_bytes)
    with contextlib.closing(blocks):
        try:
            for start, raw in zip(range(0, n_frames, step), blocks):
                block, dest = raw.view(dtype).reshape(-1, n_vox), out[start:start + step]
                if native32:  # pick the raw 4-byte words, then swap them in place (rows were checked: no bounds check)
                    picked = dest.view(np.uint32)
                    np.take(block.view(np.uint32), rows, axis=1, out=picked, mode="clip")
                    picked.byteswap(inplace=True)
                else:
                    dest[:] = block[:, rows]
        except EOFError:
            raise DataFormatError(path, f"{n_vox * n_frames} values", "a truncated data block") from None
