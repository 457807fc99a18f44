"""torch ``Dataset`` over a prepared dataset directory (see ``docs/prepared-dataset.md``).

Arrays are opened as read-only memmaps on first access inside the process that uses them, so a
dataset object can be handed to ``DataLoader`` workers (nothing open is pickled).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from brainnet.data.nsd import subject_name, subject_number
from brainnet.data.prepare_tables import SPLIT_CODES

#: Item keys a dataset can return (the ``inputs`` switch); subject and trial are always there.
INPUTS: tuple[str, ...] = ("image", "image_index", "memory_index", "behaviour", "fmri")


@dataclass(frozen=True)
class SubjectInfo:
    """Per-subject metadata of a prepared dataset.

    Attributes:
        name: ``"subj01"``; counts: the manifest's entry for the subject.
        trials: the columns of ``trials.npz``, each [n_trials].
        vertices: the arrays of ``vertices.npz`` (hemi, index, sphere, challenge), each [V, ...].
    """

    name: str
    counts: dict
    trials: dict[str, np.ndarray]
    vertices: dict[str, np.ndarray]

    @property
    def n_trials(self) -> int:
        return int(self.trials["session"].size)

    @property
    def n_vertices(self) -> int:
        return int(self.vertices["hemi"].size)


@dataclass(frozen=True)
class PreparedInfo:
    """What :func:`load_prepared` returns: the manifest and each subject's metadata."""

    root: Path
    manifest: dict
    subjects: dict[str, SubjectInfo]


def load_prepared(root: str | Path) -> PreparedInfo:
    """Read ``manifest.json`` and each subject's ``trials.npz`` / ``vertices.npz``."""
    root = Path(root)
    path = root / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {root} is not a finished prepared dataset "
                                "(run brainnet.data.prepare.prepare first)")
    manifest = json.loads(path.read_text())
    subjects = {}
    for name, counts in manifest["subjects"].items():
        with np.load(root / name / "trials.npz") as t, np.load(root / name / "vertices.npz") as v:
            subjects[name] = SubjectInfo(name, counts, {k: t[k] for k in t.files}, {k: v[k] for k in v.files})
    return PreparedInfo(root=root, manifest=manifest, subjects=subjects)


def _split_codes(split: str | Sequence[str]) -> list[int]:
    names = list(SPLIT_CODES) if split == "all" else [split] if isinstance(split, str) else list(split)
    unknown = [s for s in names if s not in SPLIT_CODES]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; choose from {list(SPLIT_CODES)} or 'all'")
    return [SPLIT_CODES[s] for s in names]


class PreparedDataset(Dataset):
    """Trials of one subject and split(s) of a prepared dataset.

    Args:
        root: the prepared dataset directory.
        subject: ``"subj01"`` or ``1``.
        split: ``"train"``, ``"val"``, ``"test"``, ``"predict"``, a list of them, or ``"all"``.
        inputs: which of :data:`INPUTS` each item holds.
        image_dtype: ``"float"`` -> float32 [3, S, S] in [0, 1]; ``"uint8"`` -> uint8 [3, S, S].

    Item (a dict):
        ``image`` [3, S, S]; ``image_index`` int (row of ``images/images.npy``);
        ``memory_index`` int64 [33] (image rows, -1 blank/outside the run); ``behaviour``
        float32 [35]; ``fmri`` float32 [V]; ``subject`` int; ``trial`` int (row of the
        subject's trial table).
    """

    def __init__(self, root: str | Path, subject: int | str, split: str | Sequence[str] = "train",
                 inputs: Sequence[str] = INPUTS, image_dtype: str = "float"):
        self.root = Path(root)
        self.subject = subject_name(subject)
        self.inputs = tuple(inputs)
        unknown = [i for i in self.inputs if i not in INPUTS]
        if unknown:
            raise ValueError(f"unknown inputs {unknown}; choose from {INPUTS}")
        if image_dtype not in ("float", "uint8"):
            raise ValueError(f"image_dtype must be 'float' or 'uint8', got {image_dtype!r}")
        self.image_dtype = image_dtype
        folder = self.root / self.subject
        if not (self.root / "manifest.json").is_file() or not folder.is_dir():
            raise FileNotFoundError(f"no finished prepared dataset with {self.subject} at {self.root}")
        with np.load(folder / "trials.npz") as trials:
            split_col = trials["split"]
            self.image_of_trial = trials["image"].astype(np.int64)
        self.trials = np.flatnonzero(np.isin(split_col, _split_codes(split)))
        self._arrays: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.trials.size)

    def _array(self, key: str) -> np.ndarray:
        if key not in self._arrays:
            path = self.root / "images/images.npy" if key == "image" else self.root / self.subject / f"{key}.npy"
            self._arrays[key] = np.load(path, mmap_mode="r")
        return self._arrays[key]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = {}
        return state

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} trials")
        trial = int(self.trials[i])
        image_row = int(self.image_of_trial[trial])
        item: dict = {"subject": subject_number(self.subject), "trial": trial}
        if "image" in self.inputs:
            pixels = torch.from_numpy(np.array(self._array("image")[image_row])).permute(2, 0, 1)
            item["image"] = pixels.float().div_(255.0) if self.image_dtype == "float" else pixels.contiguous()
        if "image_index" in self.inputs:
            item["image_index"] = image_row
        if "memory_index" in self.inputs:
            item["memory_index"] = torch.from_numpy(self._array("memory_index")[trial].astype(np.int64))
        if "behaviour" in self.inputs:
            item["behaviour"] = torch.from_numpy(self._array("behaviour")[trial].astype(np.float32))
        if "fmri" in self.inputs:
            item["fmri"] = torch.from_numpy(self._array("fmri")[trial].astype(np.float32))
        return item
