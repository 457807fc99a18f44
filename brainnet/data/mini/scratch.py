"""Bounded-memory building blocks of the nsd-mini generator.

A subject's accumulators ([images x vertices] sums over its sessions, the visual drive of every
pool image at every signal vertex) are far larger than one session. :class:`RowStore` keeps such
an array in a scratch file and maps it only for the rows or columns one step touches, so the
generator's resident memory follows a session, not a subject. :func:`index_blocks` cuts an axis
(vertices, mostly) into pieces of bounded size for the steps that work on a whole session.

Every operation reads and writes the same float values, in the same order, as the in-memory
arrays they replace: the generated files keep their bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

#: Size of the arrays one block step creates (bytes): the unit of the generator's working memory
#: (read when a block size is needed, so a test may lower it).
BLOCK_BYTES = 32 << 20


def block_rows(width: int, itemsize: int = 4, block_bytes: int | None = None) -> int:
    """Rows of ``width`` items of ``itemsize`` bytes that fill about ``block_bytes`` (default :data:`BLOCK_BYTES`)."""
    return max(1, (BLOCK_BYTES if block_bytes is None else block_bytes) // max(1, width * itemsize))


def index_blocks(n: int, width: int, itemsize: int = 4, block_bytes: int | None = None) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)``, each selecting :func:`block_rows` rows (or columns) of an
    array whose ``n`` rows (or columns) hold ``width`` items of ``itemsize`` bytes."""
    step = block_rows(width, itemsize, block_bytes)
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


class RowStore:
    """A zero-initialised array (n_rows, n_cols) of ``dtype``, in memory or in a scratch file.

    With ``path`` the values live in a raw file (C order) that is mapped only while one call
    reads or writes it, so only the touched rows count towards the process's memory.

    Args:
        shape: (n_rows, n_cols).
        dtype: element type.
        path: scratch file (created, truncated; removed by :meth:`close`), or None to keep the
            array in memory.
    """

    def __init__(self, shape: tuple[int, int], dtype, path: Path | None = None):
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.path = None if path is None or 0 in self.shape else Path(path)
        self._mem = np.zeros(self.shape, self.dtype) if self.path is None else None
        if self.path is not None:
            with open(self.path, "wb") as fh:  # a sparse file of zeros
                fh.truncate(self.shape[0] * self.shape[1] * self.dtype.itemsize)

    def _view(self, write: bool) -> np.ndarray:
        if self._mem is not None:
            return self._mem
        return np.memmap(self.path, dtype=self.dtype, mode="r+" if write else "r", shape=self.shape)

    def read(self, rows, cols: slice = slice(None)) -> np.ndarray:
        """A copy of ``store[rows, cols]`` (rows: int array or slice)."""
        view = self._view(False)
        out = np.array(view[rows, cols])
        del view
        return out

    def add(self, rows: np.ndarray, cols: slice, values: np.ndarray) -> None:
        """``store[rows, cols] += values`` (rows: distinct ints), elementwise in ``dtype``."""
        view = self._view(True)
        block = np.array(view[rows, cols])
        block += values
        view[rows, cols] = block
        del view

    def write_rows(self, rows: slice, values: np.ndarray) -> None:
        """``store[rows] = values``."""
        view = self._view(True)
        view[rows] = values
        del view

    def write_cols(self, cols: slice, values: np.ndarray) -> None:
        """``store[:, cols] = values``."""
        view = self._view(True)
        view[:, cols] = values
        del view

    def row_blocks(self, block_bytes: int | None = None) -> Iterator[np.ndarray]:
        """The rows in order, as copies of consecutive blocks of about ``block_bytes`` (see :func:`index_blocks`)."""
        for rows in index_blocks(self.shape[0], self.shape[1], self.dtype.itemsize, block_bytes):
            yield self.read(rows)

    def close(self) -> None:
        """Drop the values (removes the scratch file)."""
        self._mem = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
