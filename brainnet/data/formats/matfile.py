"""Structure check of a MATLAB v5 / v7 (``.mat``) file before scipy parses it.

scipy's MAT reader trusts the element tags: a data element of an unknown type inside an array
crashes the interpreter (segmentation fault, scipy 1.17) instead of raising. :func:`check_mat5` walks
the file's elements without decoding data and raises :class:`~brainnet.errors.DataFormatError`
naming the file unless every element has a known type, fits inside its parent, and every numeric
array holds as many values as its dimensions say. Layout (MathWorks, "MAT-File Format"): a 128-byte
header (text, subsystem offset, version 0x0100, endian mark ``IM``), then elements, each an 8-byte
tag (type, byte count; or a "small" tag with <= 4 bytes of data inside) padded to 8 bytes;
``miCOMPRESSED`` elements hold one zlib-compressed element.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from brainnet.errors import DataFormatError

MAT_HEADER_BYTES = 128
#: Bytes per value of each data type (miINT8 .. miUTF32); 14 = miMATRIX, 15 = miCOMPRESSED.
MI_ITEMSIZE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}
MI_MATRIX, MI_COMPRESSED = 14, 15
#: Array classes stored as plain values, one per element: mxDOUBLE .. mxUINT64 (mxCHAR's UTF-8 may take more).
_NUMERIC_CLASSES = set(range(6, 16))
_CELL, _STRUCT = 1, 2
_COMPLEX_FLAG = 0x0800
_MAX_DEPTH = 32


class _Bad(Exception):
    pass


def check_mat5(path: str | Path, max_bytes: int = 1 << 30) -> None:
    """Raise DataFormatError naming ``path`` unless it is a structurally sound MAT v5 file.

    Args:
        max_bytes: limit on the file and on any decompressed element (the NSD design file is ~1 MB).
    """
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise DataFormatError(path, f"a MATLAB file of at most {max_bytes} bytes", f"{size} bytes")
    raw = path.read_bytes()
    if len(raw) < MAT_HEADER_BYTES or raw[126:128] not in (b"IM", b"MI"):
        raise DataFormatError(path, "a MATLAB v5 header (128 bytes, endian mark 'IM')",
                              f"{len(raw)} bytes, mark {raw[126:128]!r}")
    order = "<" if raw[126:128] == b"IM" else ">"
    (version,) = struct.unpack_from(order + "H", raw, 124)
    if version != 0x0100:
        raise DataFormatError(path, "MATLAB file version 0x0100 (v5 / v7)", f"version {version:#06x}")
    try:
        _walk(raw, MAT_HEADER_BYTES, len(raw), order, max_bytes, 0)
    except _Bad as bad:
        raise DataFormatError(path, "MATLAB v5 data elements that nest and match their sizes", str(bad)) from None


def _tags(buf: bytes, pos: int, end: int, order: str):
    """Yield (type, data start, byte count) of the elements in ``buf[pos:end]``."""
    while pos < end:
        if pos + 8 > end:
            raise _Bad(f"a truncated element tag at byte {pos}")
        word, count = struct.unpack_from(order + "II", buf, pos)
        if word >> 16:  # small element: type and count in the first word, data in the second
            typ, count = word & 0xFFFF, word >> 16
            if count > 4:
                raise _Bad(f"a small element of {count} bytes at byte {pos}")
            yield typ, pos + 4, count
            pos += 8
            continue
        if pos + 8 + count > end:
            raise _Bad(f"an element of {count} bytes at byte {pos} running past byte {end}")
        yield word, pos + 8, count
        pos += 8 + count + (0 if word == MI_COMPRESSED else -count % 8)


def _walk(buf: bytes, pos: int, end: int, order: str, max_bytes: int, depth: int) -> None:
    for typ, start, count in _tags(buf, pos, end, order):
        _element(buf, typ, start, count, order, max_bytes, depth)


def _element(buf: bytes, typ: int, start: int, count: int, order: str, max_bytes: int, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _Bad(f"elements nested deeper than {_MAX_DEPTH}")
    if typ == MI_MATRIX:
        _matrix(buf, start, start + count, order, max_bytes, depth + 1)
    elif typ == MI_COMPRESSED:
        if depth:
            raise _Bad("a compressed element inside another element")
        unzip = zlib.decompressobj()
        try:
            inner = unzip.decompress(buf[start:start + count], max_bytes)
        except zlib.error as exc:
            raise _Bad(f"a damaged compressed element at byte {start - 8} ({exc})") from None
        if unzip.unconsumed_tail:
            raise _Bad(f"a compressed element unpacking to more than {max_bytes} bytes")
        _walk(inner, 0, len(inner), order, max_bytes, depth + 1)
    elif typ not in MI_ITEMSIZE or count % MI_ITEMSIZE[typ]:
        raise _Bad(f"an element of type {typ} and {count} bytes at byte {start - 8}")


def _matrix(buf: bytes, pos: int, end: int, order: str, max_bytes: int, depth: int) -> None:
    parts = list(_tags(buf, pos, end, order))
    if not parts:
        return  # an empty array
    for typ, start, _count in parts:
        if typ not in MI_ITEMSIZE and typ != MI_MATRIX:
            raise _Bad(f"an array part of type {typ} at byte {start - 8}")
    if len(parts) < 3 or parts[0][0] != 6 or parts[0][2] != 8 or parts[1][0] != 5 or parts[1][2] % 4:
        raise _Bad(f"an array at byte {pos - 8} without flags, dimensions and name")
    flags = struct.unpack_from(order + "I", buf, parts[0][1])[0]
    dims = struct.unpack_from(f"{order}{parts[1][2] // 4}i", buf, parts[1][1])
    if len(dims) < 2 or min(dims) < 0:
        raise _Bad(f"array dimensions {dims} at byte {pos - 8}")
    n_values = 1
    for d in dims:
        n_values *= d
    cls, rest = flags & 0xFF, parts[3:]
    if cls in _NUMERIC_CLASSES:
        want = 2 if flags & _COMPLEX_FLAG else 1
        if len(rest) != want or any(count != n_values * MI_ITEMSIZE.get(typ, 0) for typ, _, count in rest):
            found = [(typ, count) for typ, _, count in rest]
            raise _Bad(f"array of shape {dims} at byte {pos - 8} with parts (type, bytes) {found}")
    elif cls in (_CELL, _STRUCT):
        cells = rest if cls == _CELL else rest[2:]
        if any(typ != MI_MATRIX for typ, _, _ in cells):
            raise _Bad(f"a cell / struct at byte {pos - 8} holding a non-array element")
        for typ, start, count in cells:
            _element(buf, typ, start, count, order, max_bytes, depth)
