"""nsd-mini on demand: generate it once into the data home, prepare it once, reuse it after.

Notebooks and tests call :func:`ensure_mini` when they are given no real data.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from brainnet.paths import data_home


@dataclass(frozen=True)
class MiniData:
    """Where nsd-mini lives.

    Attributes:
        source: the generated trees (``source/nsd``, ``source/algonauts2023``,
            ``source/ground_truth.npz``).
        prepared: the prepared dataset made from them.
    """

    source: Path
    prepared: Path

    @property
    def nsd(self) -> Path:
        return self.source / "nsd"

    @property
    def algonauts(self) -> Path:
        return self.source / "algonauts2023"

    @property
    def ground_truth(self) -> Path:
        return self.source / "ground_truth.npz"


def ensure_mini(
    home: str | os.PathLike | None = None,
    preset: str = "default",
    seed: int = 0,
    image_size: int | None = None,
    prepare_options: dict | None = None,
    progress: bool = True,
    space: str = "fsaverage",
) -> MiniData:
    """Generate (if missing) and prepare (if not finished) nsd-mini; return where it is.

    Args:
        home: data home (argument, then ``$BRAINNET_DATA``, then ``~/brainnet_data``).
        preset: ``MiniNSDConfig.preset`` name (``tiny``, ``default``, ``algonauts``).
        seed: generator seed.
        image_size: stored image size of the prepared dataset (default: the generated size).
        prepare_options: extra keyword arguments for :func:`brainnet.data.prepare` (not ``space``).
        space: the units (:data:`brainnet.data.prep.spaces.SPACES`). Each space is prepared into
            its own folder (:func:`mini_prepared_dir`) from the same generated tree, so a notebook
            asking for ``"fship"`` leaves the others' ``"fsaverage"`` dataset as it is.

    Generation writes into a temporary folder renamed when complete, so an interrupted run
    never leaves a half-written tree that looks finished; ``prepare`` resumes by itself.
    """
    from brainnet.data.mini.generate import MiniNSDConfig, make_mini_nsd
    from brainnet.data.prep import prepare

    options = dict(prepare_options or {})
    if "space" in options:
        raise ValueError("pass the space as ensure_mini(space=...), not in prepare_options")
    root = data_home(home)
    config = dataclasses.replace(MiniNSDConfig.preset(preset), seed=seed)
    name = f"nsd-mini-{preset}-seed{seed}"
    size = image_size or config.image_size
    prepared = mini_prepared_dir(root, name, size, space)  # a bad space fails here, before generating
    source = root / name
    if not (source / "ground_truth.npz").is_file():
        tmp = root / f".{name}.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        make_mini_nsd(tmp, config, progress=progress)
        if source.exists():
            shutil.rmtree(source)
        os.replace(tmp, source)
    prepare(source / "nsd", source / "algonauts2023", prepared, image_size=size, progress=progress, space=space,
            **options)
    return MiniData(source=source, prepared=prepared)


def mini_prepared_dir(root: Path, name: str, image_size: int, space: str = "fsaverage") -> Path:
    """Folder of nsd-mini ``name`` prepared at ``image_size`` px in ``space``:
    ``<root>/<name>-prepared-<size>px`` for ``"fsaverage"`` (the folder it always had), else
    ``<root>/<name>-<space>-prepared-<size>px``."""
    from brainnet.data.prep.spaces import SPACES

    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    tag = "" if space == "fsaverage" else f"-{space}"
    return Path(root) / f"{name}{tag}-prepared-{int(image_size)}px"
