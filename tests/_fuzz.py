"""A small mutation engine for the reader fuzz tests (``tests/data/test_fuzz_readers.py``).

A :class:`Spec` names one file a reader takes, its valid seed bytes, how to read it, and which
mutations must be detected. :func:`check_case` draws one mutation with hypothesis (truncation at a
random offset, 1-4 flipped bytes, a changed header field, or a format-aware structural edit), writes
the mutated file, runs the reader and asserts: only :class:`~brainnet.errors.DataFormatError` naming
one of the spec's files escapes, and a mutation marked as detectable (header, size, structure) does
raise it. A flipped payload byte may read as other valid values, so flips are never required to fail.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from brainnet.errors import DataFormatError


def _always(_value) -> bool:
    return True


@dataclass(frozen=True)
class Field:
    """A header field at ``offset`` of the (gunzipped) stream, packed with ``fmt`` (struct format).
    ``detect(new_value)`` says whether the reader must refuse the changed value."""

    name: str
    offset: int
    fmt: str
    values: st.SearchStrategy
    detect: Callable[[object], bool] = _always


@dataclass(frozen=True)
class Edit:
    """A structural edit: ``apply(raw, data)`` returns the edited (gunzipped) stream; hypothesis'
    ``data`` draws its parameters. Structural edits must always be detected unless ``detect`` is False."""

    name: str
    apply: Callable
    detect: bool = True


@dataclass(frozen=True)
class Spec:
    """One fuzzed file kind.

    Attributes:
        name: test id; path: where the mutated file is written (the reader's other inputs lie beside
            it, valid); seed: valid bytes; read: the reader call, ``read(path)``; examples: hypothesis
            cases; detect_cut_below: truncations shorter than this must be detected (0: none);
            fields, edits: header fields and structural edits; gz: fields and edits apply to the
            gunzipped stream; names: other files an error may name.
    """

    name: str
    path: Path
    seed: bytes
    read: Callable[[Path], object]
    examples: int
    detect_cut_below: int
    fields: tuple[Field, ...] = ()
    edits: tuple[Edit, ...] = ()
    gz: bool = False
    names: tuple[Path, ...] = field(default_factory=tuple)


def draw_mutation(data, spec: Spec) -> tuple[str, bytes, bool]:
    """(description, mutated bytes, must be detected) for one hypothesis case."""
    seed = spec.seed
    kinds = ["truncate", "flip"] + ["field"] * bool(spec.fields) + ["edit"] * bool(spec.edits)
    kind = data.draw(st.sampled_from(kinds), label="kind")
    if kind == "truncate":
        cut = data.draw(st.integers(0, len(seed) - 1), label="cut")
        return f"truncated to {cut} of {len(seed)} bytes", seed[:cut], cut < spec.detect_cut_below
    if kind == "flip":
        out = bytearray(seed)
        spots = data.draw(st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(1, 255)),
                                   min_size=1, max_size=4), label="flips")
        for at, mask in spots:
            out[at] ^= mask
        return f"bytes flipped {spots}", bytes(out), False
    raw = gzip.decompress(seed) if spec.gz else seed
    if kind == "field":
        fld = data.draw(st.sampled_from(spec.fields), label="field")
        (old,) = struct.unpack_from(fld.fmt, raw, fld.offset)
        new = data.draw(fld.values.filter(lambda v: v != old), label=fld.name)
        out = bytearray(raw)
        struct.pack_into(fld.fmt, out, fld.offset, new)
        label, detect = f"header field {fld.name} {old!r} -> {new!r}", fld.detect(new)
    else:
        edit = data.draw(st.sampled_from(spec.edits), label="edit")
        out, label, detect = edit.apply(raw, data), f"edit {edit.name}", edit.detect
    out = gzip.compress(bytes(out), mtime=0) if spec.gz else bytes(out)
    return label, out, detect


def check_case(spec: Spec, data) -> None:
    """Write one mutation of ``spec``'s seed, read it, check the outcome; the seed is restored after."""
    label, content, detect = draw_mutation(data, spec)
    spec.path.write_bytes(content)
    try:
        spec.read(spec.path)
    except DataFormatError as err:
        allowed = {spec.path, *spec.names}
        assert Path(err.path) in allowed or any(Path(err.path) == p.parent for p in allowed), (
            f"{spec.name}, {label}: the error names {err.path}, not the file")
        return
    except Exception as exc:
        raise AssertionError(f"{spec.name}, {label}: {type(exc).__name__} escaped: {exc}") from exc
    finally:
        spec.path.write_bytes(spec.seed)
    assert not detect, f"{spec.name}, {label}: read without error"


# --------------------------------------------------------------------------- format-aware edits


def npy_header_edit(shape: tuple[int, ...] | None = None, descr: str | None = None) -> Callable:
    """An edit rewriting a v1 ``.npy`` header's shape or dtype (``None``: drawn), keeping its length."""

    def apply(raw: bytes, data) -> bytes:
        (hlen,) = struct.unpack_from("<H", raw, 8)
        header = raw[10:10 + hlen].decode("latin1")
        old_shape = tuple(int(s) for s in re.search(r"'shape': \(([^)]*)\)", header).group(1).split(",") if s.strip())
        new_shape = shape if shape is not None else tuple(data.draw(
            st.lists(st.integers(0, 2 ** 40), min_size=0, max_size=3).filter(lambda s: tuple(s) != old_shape),
            label="shape"))
        new_descr = descr or re.search(r"'descr': '([^']*)'", header).group(1)
        text = f"{{'descr': '{new_descr}', 'fortran_order': False, 'shape': {tuple(new_shape)!r}, }}"
        if len(text) + 1 > hlen:
            return raw[:10] + (text + "\n").encode("latin1") + raw[10 + hlen:]  # longer: header len now wrong
        return raw[:10] + (text.ljust(hlen - 1) + "\n").encode("latin1") + raw[10 + hlen:]

    return apply


def png_ihdr_edit(raw: bytes, data) -> bytes:
    """Change a PNG's width or height (IHDR at byte 16) and recompute the chunk's CRC."""
    out = bytearray(raw)
    at = data.draw(st.sampled_from([16, 20]), label="ihdr field")
    (old,) = struct.unpack_from(">I", raw, at)
    new = data.draw(st.integers(1, 2 ** 31 - 1).filter(lambda v: v != old), label="size")
    struct.pack_into(">I", out, at, new)
    struct.pack_into(">I", out, 29, zlib.crc32(bytes(out[12:29])))
    return bytes(out)


def pickle_global_edit(raw: bytes, data) -> bytes:
    """Make a protocol-4 ``.npy`` pickle call ``os.system`` instead of numpy's array reconstruction."""
    old = re.search(rb"\x8c.numpy\._?core\.multiarray\x94\x8c\x0c_reconstruct", raw, re.S).group(0)
    new = b"\x8c\x02os\x94\x8c\x06system"
    frame = raw.index(b"\x95")
    (length,) = struct.unpack_from("<Q", raw, frame + 1)
    out = bytearray(raw.replace(old, new, 1))
    struct.pack_into("<Q", out, frame + 1, length + len(new) - len(old))
    return bytes(out)


def set_fields(changes: tuple[tuple[int, str, int], ...]) -> Callable:
    """An edit setting several header fields at once: ``(offset, struct format, value)`` each (e.g.
    dimensions declaring gigabytes of data that a small file cannot hold)."""

    def apply(raw: bytes, _data) -> bytes:
        out = bytearray(raw)
        for offset, fmt, value in changes:
            struct.pack_into(fmt, out, offset, value)
        return bytes(out)

    return apply


def text_lines_edit(kind: str) -> Callable:
    """An edit of a text table: ``drop`` a line, ``dup`` a line, ``junk`` a token into a line."""

    def apply(raw: bytes, data) -> bytes:
        lines = raw.decode().splitlines()
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        if kind == "drop":
            del lines[i]
        elif kind == "dup":
            lines.insert(i, lines[i])
        else:
            parts = lines[i].split("\t") if "\t" in lines[i] else lines[i].split(" ")
            j = data.draw(st.integers(0, len(parts) - 1), label="token")
            parts[j] = data.draw(st.sampled_from(["x", "1.5.2", "--", "#"]), label="junk")
            lines[i] = ("\t" if "\t" in lines[i] else " ").join(parts)
        return ("\n".join(lines) + "\n").encode()

    return apply


def int_values(bits: int = 32, signed: bool = True, valid: tuple[int, ...] = ()) -> st.SearchStrategy:
    """Integers of a header field: boundaries, large sizes (``hi // 8``, ``hi // 1000``: allocations a
    reader must refuse before making), the field's ``valid`` codes, and random values of its width."""
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    special = [lo, hi, -1 if signed else hi, 0, 1, 2, 3, hi // 8, hi // 1000, *valid]
    return st.one_of(st.sampled_from(special), st.integers(lo, hi))


def seeded(rng_seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(rng_seed)
