"""Integrity checks of a prepared dataset: file presence, sizes and ``.npy`` headers on open
(:func:`check_files`), sha256 of every file on demand (:func:`verify_files`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainnet.data import layout as L
from brainnet.data.io import npy_header, sha256_file
from brainnet.errors import DataFormatError

if TYPE_CHECKING:
    from brainnet.data.prepared import PreparedDataset

log = logging.getLogger(__name__)


def expected_arrays(data: PreparedDataset) -> dict[str, tuple[tuple[int, ...], str]]:
    """Relative path -> (shape, dtype) of every ``.npy`` file, from the manifest's counts."""
    size = data.image_size
    out = {L.IMAGES: ((data.n_images, size, size, 3), "uint8"), L.IMAGE_IDS: ((data.n_images,), "int64")}
    for name in data.subjects:
        s = data.subject(name)
        t, v = s.n_trials, s.n_vertices
        out[f"{name}/{L.FMRI}"] = ((t, v), "float16")
        out[f"{name}/{L.MEMORY_INDEX}"] = ((t, L.N_MEMORY_FRAMES), "int32")
        if data.has("behaviour"):
            out[f"{name}/{L.BEHAVIOUR}"] = ((t, L.N_BEHAVIOUR), "float32")
        if data.has("noise_ceiling"):
            out[f"{name}/{L.NOISE_CEILING}"] = ((v,), "float32")
        out[f"{name}/{L.VERTEX_VALID}"] = ((v,), "bool")
    return out


def check_manifest(path: Path, manifest: dict) -> None:
    """Check the tables a reader indexes: ``images`` (``n_images``, ``size``), ``subjects`` (each with
    ``n_trials``, ``n_vertices``) and ``files`` (each with ``bytes``), all whole numbers >= 0.

    Raises:
        DataFormatError: naming the manifest ``path`` and the first bad entry.
    """
    def counts(where: str, entry, keys: tuple[str, ...]) -> None:
        bad = [k for k in keys if not isinstance(entry, dict) or not isinstance(entry.get(k), int)
               or isinstance(entry.get(k), bool) or entry[k] < 0]
        if bad:
            raise DataFormatError(path, f"{where} with whole numbers {list(keys)}", f"{entry!r:.80}")

    for key in ("subjects", "files", "images"):
        if not isinstance(manifest.get(key), dict):
            raise DataFormatError(path, f"a {key!r} table", f"{type(manifest.get(key)).__name__}")
    counts("'images'", manifest["images"], ("n_images", "size"))
    for name, entry in manifest["subjects"].items():
        counts(f"subject {name!r}", entry, ("n_trials", "n_vertices"))
    for rel, entry in manifest["files"].items():
        counts(f"file {rel!r}", entry, ("bytes",))


def check_files(data: PreparedDataset) -> None:
    """Check every listed file's presence and size and every ``.npy`` header (no hashing).

    Raises:
        DataFormatError: naming the first bad file.
    """
    files: dict = data.manifest["files"]
    expected = expected_arrays(data)
    level = data.manifest.get("level", "trial")
    if level not in L.LEVELS:
        raise DataFormatError(data.root / L.MANIFEST, f"level in {L.LEVELS}", repr(level))
    for name in data.subjects:
        for rel in L.subject_files(data.inputs):
            if f"{name}/{rel}" not in files:
                raise DataFormatError(data.root / L.MANIFEST, f"{name}/{rel} listed in 'files'", "not listed")
    for rel, entry in files.items():
        path = data.root / rel
        if not path.is_file():
            raise DataFormatError(path, f"a file of {entry.get('bytes')} bytes (listed in the manifest)",
                                  "no such file (re-run `brainnet prepare`)")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise DataFormatError(path, f"{entry.get('bytes')} bytes (as the manifest records)", f"{size} bytes")
        if rel.endswith(".npy"):
            _check_npy(path, entry, expected.get(rel), size)


def _check_npy(path: Path, entry: dict, expected: tuple | None, size: int) -> None:
    try:
        header = npy_header(path)
    except (OSError, ValueError, SyntaxError) as err:
        raise DataFormatError(path, "a .npy header", f"{type(err).__name__}: {err}") from None
    found = f"{header.dtype} {list(header.shape)}"
    recorded = (tuple(entry["shape"]), entry["dtype"]) if "shape" in entry else None
    for want in (expected, recorded):
        if want is not None and (header.shape != tuple(want[0]) or header.dtype != np.dtype(want[1])):
            raise DataFormatError(path, f"{np.dtype(want[1])} {list(want[0])}", found)
    if header.fortran_order or header.offset + header.data_bytes != size:
        raise DataFormatError(path, f"{header.offset + header.data_bytes} bytes in C order for {found}",
                              f"{size} bytes{' in Fortran order' if header.fortran_order else ''}")


def verify_files(data: PreparedDataset, progress: bool = False) -> int:
    """Re-hash every listed file against the manifest's sha256; returns the number of files.

    Raises:
        DataFormatError: naming the first file whose content changed (and how many did).
    """
    files = data.manifest["files"]
    items = sorted(files.items())
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="verify", unit="file")
    bad = [rel for rel, entry in items if sha256_file(data.root / rel) != entry["sha256"]]
    if bad:
        more = f" ({len(bad) - 1} other files differ too: {bad[1:6]})" if len(bad) > 1 else ""
        raise DataFormatError(data.root / bad[0], f"sha256 {files[bad[0]]['sha256'][:16]}... as recorded",
                              f"other content{more}")
    log.debug("verified %d files of %s", len(files), data.root)
    return len(files)
