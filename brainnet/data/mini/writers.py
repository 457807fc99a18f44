"""Byte-reproducible writers for the file formats of the NSD and Algonauts trees.

Every writer produces the same bytes for the same input: MAT headers carry a fixed text instead
of a creation date, gzip streams a zero mtime, HDF5 datasets no timestamps.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np

_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by brainnet nsd-mini (synthetic)"


def _parent(path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_mat(path, arrays: dict) -> None:
    """MAT v5 file (scipy.io.savemat) with a fixed 116-byte header text."""
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, arrays, format="5", do_compression=False, oned_as="row")
    data = bytearray(buf.getvalue())
    data[:116] = _MAT_HEADER.ljust(116, b" ")
    _parent(path).write_bytes(bytes(data))


def mgh_bytes(data: np.ndarray) -> bytes:
    """Uncompressed MGH bytes of an array (n, 1, 1, k) (float32 kept as float32).

    The header always holds 4 dimensions; with k = 1 nibabel wants (and reads back) the array
    as (n, 1, 1), which is the same file.
    """
    import nibabel as nib

    data = np.ascontiguousarray(data)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    img = nib.MGHImage(data, affine=np.eye(4))
    return img.to_bytes()


def write_mgh(path, data: np.ndarray) -> None:
    """Uncompressed ``.mgh``; ``data`` shape (n_vertices, 1, 1, k)."""
    _parent(path).write_bytes(mgh_bytes(data))


def write_mgz(path, data: np.ndarray) -> None:
    """Gzipped MGH (``.mgz``) with a zero gzip mtime; ``data`` shape (n_vertices, 1, 1, k)."""
    _parent(path).write_bytes(gzip.compress(mgh_bytes(data), compresslevel=6, mtime=0))


def write_nifti(path, data: np.ndarray, affine: np.ndarray, compresslevel: int = 6) -> None:
    """Gzipped NIfTI-1 (``.nii.gz``, zero gzip mtime) of a 3-D or 4-D array kept in its dtype (no
    scaling), 1 mm voxels; ``affine`` float [4, 4] voxel -> scanner mm. ``compresslevel`` 0 writes a
    valid gzip stream of stored blocks (fast; for the noise-filled betas, which hardly compress)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, np.float64))
    img.header.set_data_dtype(np.asarray(data).dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(img.affine, code=1)
    img.header.set_sform(img.affine, code=1)
    _parent(path).write_bytes(gzip.compress(img.to_bytes(), compresslevel=compresslevel, mtime=0))


def write_ctab(path, names: dict, messy: bool = False) -> None:
    """Colour-table text ``<int> <name>`` per line, first line ``0 Unknown``.

    ``messy`` adds stray whitespace (leading spaces, tabs, trailing blanks) as real files may have.
    """
    lines = []
    for code in sorted(names):
        if messy:
            lines.append(f"  {code}\t {names[code]}  ")
        else:
            lines.append(f"{code} {names[code]}")
    _parent(path).write_text("\n".join(lines) + "\n")


def write_hdf5_images(path, images: np.ndarray) -> None:
    """HDF5 with dataset ``imgBrick`` uint8 (n, S, S, 3), no timestamps."""
    write_hdf5_image_blocks(path, images.shape, [images])


def write_hdf5_image_blocks(path, shape: tuple[int, int, int, int], blocks) -> None:
    """The file of :func:`write_hdf5_images` for images of ``shape`` (n, S, S, 3) given as consecutive
    blocks (an iterable of uint8 arrays (rows, S, S, 3)); the bytes do not depend on the blocking."""
    import h5py

    with h5py.File(_parent(path), "w", libver="earliest") as f:
        ds = f.create_dataset("imgBrick", shape=tuple(shape), dtype=np.uint8, track_times=False)
        start = 0
        for block in blocks:
            ds[start:start + len(block)] = block
            start += len(block)
        if start != shape[0]:
            raise ValueError(f"blocks hold {start} images, the file {shape[0]}")


def write_png(path, image: np.ndarray) -> None:
    """RGB PNG of a uint8 (S, S, 3) array."""
    from PIL import Image

    Image.fromarray(image, mode="RGB").save(_parent(path), format="PNG", optimize=False, compress_level=1)


def write_npy(path, array) -> None:
    """Plain ``.npy`` (object arrays, e.g. a dict, are pickled)."""
    with open(_parent(path), "wb") as fh:
        np.save(fh, array, allow_pickle=True)


def write_npy_blocks(path, shape: tuple[int, ...], dtype, blocks) -> None:
    """The ``.npy`` that :func:`write_npy` writes for a C-order array of ``shape`` and ``dtype``, from
    its consecutive row blocks (an iterable of arrays (rows, *shape[1:])), never holding the whole."""
    from numpy.lib import format as npy_format

    dtype = np.dtype(dtype)
    header = {"descr": npy_format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(int(n) for n in shape)}
    n_rows = 0
    with open(_parent(path), "wb") as fh:
        npy_format.write_array_header_1_0(fh, header)
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=dtype)
            if block.shape[1:] != tuple(shape[1:]):
                raise ValueError(f"block of shape {block.shape} does not fit an array of shape {tuple(shape)}")
            fh.write(block.tobytes())
            n_rows += block.shape[0]
    if n_rows != shape[0]:
        raise ValueError(f"blocks hold {n_rows} rows, the array {shape[0]}")
