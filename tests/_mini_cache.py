"""Expensive test inputs built once per pytest run and shared by modules and pytest-xdist workers.

One generated nsd-mini tree per preset, one prepared tiny dataset, and any other result a fixture
registers with :func:`shared_result` (the acceptance fits). They live in :func:`shared_dir`: the
session's base temp folder, or under pytest-xdist the run's folder above the workers' own ones, so
a second module or a second worker reuses them. A file lock per item makes the first caller build
it while the others wait. Nothing here may be modified by a test: tests that corrupt inputs work on
:func:`clone_tree` copies.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np
from filelock import FileLock

from brainnet.data.mini.generate import MiniNSDConfig, MiniNSDPaths, make_mini_nsd
from brainnet.data.prep import prepare

T = TypeVar("T")

#: Parameters of the shared prepared dataset (image_size = the tiny preset's 32 px: no resize).
PREPARE_KW = dict(image_size=32, progress=False)


def shared_dir(tmp_path_factory) -> Path:
    """The folder shared by every module of this pytest run, and by its xdist workers.

    pytest-xdist gives each worker its own base temp ``<run>/popen-gwN``; ``<run>`` is common to them.
    """
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold the lock of ``path`` (``<path>.lock``; blocks while another process holds it)."""
    with FileLock(str(path) + ".lock"):
        yield


def mini_tree(tmp_path_factory, preset: str = "tiny") -> MiniNSDPaths:
    """The generated tree of ``preset`` (generated once per pytest run)."""
    root = shared_dir(tmp_path_factory) / f"nsd-mini-{preset}"
    done = root / ".generated"
    with exclusive(root):
        if not done.is_file():
            if root.exists():
                shutil.rmtree(root)
            make_mini_nsd(root, MiniNSDConfig.preset(preset), progress=False)
            done.write_text("ok\n")
    return MiniNSDPaths.under(root)


def prepared_mini(tmp_path_factory, preset: str = "tiny", name: str | None = None, **prepare_kw) -> Path:
    """The tree of ``preset`` prepared with ``prepare_kw`` into ``name`` (default ``prepared-<preset>``),
    prepared once per pytest run."""
    tree = mini_tree(tmp_path_factory, preset)
    out = shared_dir(tmp_path_factory) / (name or f"prepared-{preset}")
    with exclusive(out):
        return prepare(tree.nsd, tree.algonauts, out, **{"progress": False, **prepare_kw})


def prepared_tiny(tmp_path_factory) -> Path:
    """The tiny tree prepared with :data:`PREPARE_KW` (prepared once per pytest run)."""
    return prepared_mini(tmp_path_factory, "tiny", **PREPARE_KW)


#: Parameters of the shared ``fship`` dataset (challenge vertices + func1mm voxels) of the tiny tree.
FSHIP_KW = dict(space="fship", image_size=32)


def prepared_tiny_fship(tmp_path_factory) -> Path:
    """The tiny tree prepared with :data:`FSHIP_KW` into ``prepared-tiny-fship`` (once per pytest run)."""
    return prepared_mini(tmp_path_factory, "tiny", name="prepared-tiny-fship", **FSHIP_KW)


def prepared_image_tiny(tmp_path_factory) -> Path:
    """The tiny tree's Algonauts release alone prepared image-level (no NSD tree; surfaces from the
    tree's fsaverage folder) with :data:`PREPARE_KW` into ``prepared-tiny-image`` (once per pytest run)."""
    tree = mini_tree(tmp_path_factory, "tiny")
    out = shared_dir(tmp_path_factory) / "prepared-tiny-image"
    with exclusive(out):
        return prepare(None, tree.algonauts, out, fsaverage_dir=tree.nsd / "nsddata/freesurfer/fsaverage",
                       **PREPARE_KW)


def result_path(tmp_path_factory, name: str) -> Path:
    """The pickle of the :func:`shared_result` ``name`` (a subprocess may load it once it exists)."""
    return shared_dir(tmp_path_factory) / "results" / f"{name}.pkl"


def shared_result(tmp_path_factory, name: str, compute: Callable[[], T]) -> T:
    """``compute()`` once per pytest run: the first caller computes and pickles it, later callers
    (other modules, other xdist workers) wait for it and load the pickle."""
    path = result_path(tmp_path_factory, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(path):
        if path.is_file():
            with open(path, "rb") as fh:
                return pickle.load(fh)
        value = compute()
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        return value


#: :func:`shared_result` name of :func:`tiny_features`.
TINY_FEATURES = "features-tiny-32px-pool4"


def tiny_features(tmp_path_factory):
    """FeatureSet of :func:`prepared_tiny`: ``brainnet-tiny`` run at the images' 32 px (4x less work than
    64), maps pooled to 4 x 4 (built once per pytest run; pickled at ``result_path(.., TINY_FEATURES)``)."""
    import warnings

    from brainnet.training.features import build_features, resolve_backbone

    root = prepared_tiny(tmp_path_factory)

    def build():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return build_features(root, resolve_backbone("brainnet-tiny", image_size=32), pool=4, num_workers=0)

    return shared_result(tmp_path_factory, TINY_FEATURES, build)


#: :func:`shared_result` name of :func:`tiny_replay_features`.
TINY_REPLAY_FEATURES = "replay-features-tiny"


def tiny_replay_features(tmp_path_factory):
    """ReplayFeatures (``brainnet-tiny``, one vector per image) of :func:`prepared_tiny`, built once per
    pytest run; every dataset prepared from the tiny tree at 32 px has the same image rows."""
    from brainnet.training.replay_fit import replay_features

    root = prepared_tiny(tmp_path_factory)
    return shared_result(tmp_path_factory, TINY_REPLAY_FEATURES, lambda: replay_features(root, "brainnet-tiny"))


#: A small MemModel for the tiny dataset's features (model_options of :func:`tiny_fit_config`).
TINY_MODEL = dict(width=16, conv_blocks=0, mlp_hidden=32, memory_hidden=32, frame_dim=8, t1_dim=8,
                  memory_out=16, behaviour_hidden=16, behaviour_out=8, time_dim=4, n_memory_frames=8,
                  chunk_size=None)


def tiny_fit_config(root, out, **kw):
    """A quick TrainConfig on :func:`prepared_tiny` with :data:`TINY_MODEL` (``kw`` overrides)."""
    from brainnet.training.config import TrainConfig

    base = dict(data_dir=str(root), out_dir=str(out), model_options=TINY_MODEL, max_epochs=2, batch_size=64,
                warmup_steps=2, vertices_per_step=128, patience=None, top_k=3, eval_split="val", lr=2e-3)
    base.update(kw)
    return TrainConfig(**base)


def clone_tree(src: Path, dst: Path) -> Path:
    """Mirror ``src`` into ``dst``: real folders, files as symlinks to the originals.

    Unlink a file before writing it (never write through the link), so the original is never touched.
    """
    for folder, _dirs, files in os.walk(src):
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


def ground_truth_arrays(tree) -> dict[str, np.ndarray]:
    """Every array of nsd-mini's ``ground_truth.npz`` (``tree``: the :func:`mini_tree` paths)."""
    with np.load(tree.ground_truth) as gt:
        return {k: gt[k] for k in gt.files}


def output_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, keyed by relative path."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
