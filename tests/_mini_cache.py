"""One generated nsd-mini tree (and one prepared dataset) per pytest session, shared by modules.

Module-scoped fixtures call these helpers; the results live under the session's base temp
folder, so the second module to ask reuses them. Nothing here may be modified by a test: tests
that corrupt inputs work on :func:`clone_tree` copies.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from brainnet.data.prep import prepare
from brainnet.data.mini.generate import MiniNSDConfig, MiniNSDPaths, make_mini_nsd

#: Parameters of the shared prepared dataset (image_size = the tiny preset's 32 px: no resize).
PREPARE_KW = dict(image_size=32, progress=False)


def mini_tree(tmp_path_factory, preset: str = "tiny") -> MiniNSDPaths:
    """The generated tree of ``preset`` (generated once per pytest session)."""
    root = tmp_path_factory.getbasetemp() / f"nsd-mini-{preset}"
    done = root / ".generated"
    if not done.is_file():
        if root.exists():
            shutil.rmtree(root)
        make_mini_nsd(root, MiniNSDConfig.preset(preset), progress=False)
        done.write_text("ok\n")
    return MiniNSDPaths.under(root)


def prepared_tiny(tmp_path_factory) -> Path:
    """The tiny tree prepared with :data:`PREPARE_KW` (prepared once per pytest session)."""
    tree = mini_tree(tmp_path_factory)
    out = tmp_path_factory.getbasetemp() / "prepared-tiny"
    return prepare(tree.nsd, tree.algonauts, out, **PREPARE_KW)


def clone_tree(src: Path, dst: Path) -> Path:
    """Mirror ``src`` into ``dst``: real folders, files as symlinks to the originals.

    Unlink a file before writing it (never write through the link), so the original is never touched.
    """
    for folder, dirs, files in os.walk(src):
        rel = Path(folder).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            os.symlink(Path(folder) / name, dst / rel / name)
    return dst


def tree_digest(root: Path) -> str:
    """sha256 over (relative path, content) of every file under ``root`` (symlinks followed)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def output_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, keyed by relative path."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
