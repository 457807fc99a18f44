"""Read a pickled ``.npy`` (a 0-d object array written by ``np.save``) without running its code.

numpy's loader, with pickles allowed, hands the file to :mod:`pickle`, which calls any importable
function the file names — a downloaded data file could run ``os.system``. :func:`load_object_npy`
parses the ``.npy`` header itself and unpickles the payload with an unpickler that resolves only
the globals numpy's own array pickles reference (array reconstruction, ``ndarray``, ``dtype``,
numpy scalars; ``numpy.core`` in files written by numpy 1.x, ``numpy._core`` from numpy 2) and
refuses every other one with :class:`~brainnet.errors.DataFormatError` before calling it.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from pathlib import Path

import numpy as np

from brainnet.errors import DataFormatError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray

#: (module, name) -> object: the only globals an unpickled mapping file may reference.
ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    **{(mod, "_reconstruct"): _multiarray._reconstruct for mod in ("numpy._core.multiarray", "numpy.core.multiarray")},
    **{(mod, "scalar"): _multiarray.scalar for mod in ("numpy._core.multiarray", "numpy.core.multiarray")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles
}


class _RefusedGlobal(Exception):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _RefusedGlobal(module, name) from None

    def persistent_load(self, pid):
        raise _RefusedGlobal("persistent id", repr(pid)[:40])


def load_object_npy(path: str | os.PathLike, what: str, max_bytes: int = 64 << 20) -> object:
    """The object held by a pickled 0-d object ``.npy`` (e.g. a ``{code: name}`` dict).

    Args:
        path: the ``.npy`` file; what: what the caller expects (used in error messages).
        max_bytes: larger files are refused unread (mapping files are a few hundred bytes).

    Raises:
        DataFormatError: missing file, not an object ``.npy``, a pickle that names any global
            outside :data:`ALLOWED_GLOBALS` (refused, never called), or a malformed pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, what, "no such file")
    size = path.stat().st_size
    if size > max_bytes:
        raise DataFormatError(path, f"{what} (at most {max_bytes} bytes)", f"{size} bytes")
    raw = path.read_bytes()
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read_header(stream)
    except Exception as exc:
        raise DataFormatError(path, f"{what} (an .npy file)", f"a bad header ({type(exc).__name__}: {exc})") from None
    if dtype != np.dtype(object) or shape != ():
        raise DataFormatError(path, f"{what} (a 0-d object array)", f"dtype {dtype}, shape {shape}")
    try:
        array = _NumpyOnlyUnpickler(stream).load()
    except _RefusedGlobal as refused:
        raise DataFormatError(path, f"{what} (a pickle of numpy arrays and plain values)",
                              f"a reference to {refused} (refused, not run)") from None
    except Exception as exc:
        raise DataFormatError(path, f"{what} (a readable pickle)", f"{type(exc).__name__}: {exc}") from None
    if stream.read(1):
        raise DataFormatError(path, f"{what} (one pickle)", "trailing bytes after it")
    if not isinstance(array, np.ndarray) or array.dtype != object or array.shape != ():
        raise DataFormatError(path, f"{what} (a 0-d object array)", f"{type(array).__name__}")
    return array.item()
