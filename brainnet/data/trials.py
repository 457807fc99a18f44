"""A torch ``Dataset`` of one subject's trials in a prepared dataset, item by item.

Arrays come from :class:`brainnet.data.PreparedDataset`, opened on first access inside the process
that uses them, so a dataset object can be handed to ``DataLoader`` workers (nothing open is
pickled). Training uses the batched :class:`brainnet.training.EncodingDataset`; this one serves
single trials for custom loops and inspection.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from brainnet.data.layout import subject_number
from brainnet.data.prepared import PreparedDataset

#: Item keys a dataset can return (the ``inputs`` switch); subject and trial are always there.
INPUTS: tuple[str, ...] = ("image", "image_index", "memory_index", "behaviour", "fmri")


class TrialDataset(Dataset):
    """Trials of one subject and split(s) of a prepared dataset.

    Args:
        root: the prepared dataset directory, or an open :class:`PreparedDataset`.
        subject: ``"subj01"`` or ``1``.
        split: ``"train"``, ``"val"``, ``"test"``, ``"predict"``, ``"heldout"``, a list, or ``"all"``.
        inputs: which of :data:`INPUTS` each item holds (None: all the dataset has; ``behaviour``
            asked of a dataset without it raises :class:`~brainnet.errors.MissingInputError`).
        image_dtype: ``"float"`` -> float32 [3, S, S] in [0, 1]; ``"uint8"`` -> uint8 [3, S, S].

    Item (a dict):
        ``image`` [3, S, S]; ``image_index`` int (row of ``images/images.npy``);
        ``memory_index`` int64 [33] (image rows, -1 blank/outside the run); ``behaviour``
        float32 [35]; ``fmri`` float32 [V]; ``subject`` int; ``trial`` int (row of the
        subject's trial table).
    """

    def __init__(self, root: str | Path | PreparedDataset, subject: int | str, split: str | Sequence[str] = "train",
                 inputs: Sequence[str] | None = None, image_dtype: str = "float"):
        self.data = PreparedDataset.open(root)
        if inputs is None:
            inputs = [i for i in INPUTS if i != "behaviour" or self.data.has("behaviour")]
        self.inputs = tuple(inputs)
        if "behaviour" in self.inputs:
            self.data.require("behaviour", "TrialDataset(inputs=[..., 'behaviour'])")
        unknown = [i for i in self.inputs if i not in INPUTS]
        if unknown:
            raise ValueError(f"unknown inputs {unknown}; choose from {INPUTS}")
        if image_dtype not in ("float", "uint8"):
            raise ValueError(f"image_dtype must be 'float' or 'uint8', got {image_dtype!r}")
        self.image_dtype = image_dtype
        self.prepared = self.data.subject(subject)
        self.subject = self.prepared.name
        self.image_of_trial = self.prepared.image
        self.trials = self.prepared.split_rows(split)

    def __len__(self) -> int:
        return int(self.trials.size)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} trials")
        trial = int(self.trials[i])
        image_row = int(self.image_of_trial[trial])
        item: dict = {"subject": subject_number(self.subject), "trial": trial}
        if "image" in self.inputs:
            pixels = torch.from_numpy(np.array(self.data.images[image_row])).permute(2, 0, 1)
            item["image"] = pixels.float().div_(255.0) if self.image_dtype == "float" else pixels.contiguous()
        if "image_index" in self.inputs:
            item["image_index"] = image_row
        if "memory_index" in self.inputs:
            item["memory_index"] = torch.from_numpy(self.prepared.memory_index[trial].astype(np.int64))
        if "behaviour" in self.inputs:
            item["behaviour"] = torch.from_numpy(self.prepared.behaviour[trial].astype(np.float32))
        if "fmri" in self.inputs:
            item["fmri"] = torch.from_numpy(self.prepared.fmri[trial].astype(np.float32))
        return item
