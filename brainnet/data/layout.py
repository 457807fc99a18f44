"""The prepared-dataset format: its names, codes and column groups, defined once.

Only the writer (:mod:`brainnet.data.prep`) and the reader (:mod:`brainnet.data.prepared`) use the
file names; everything else asks :class:`brainnet.data.PreparedDataset`. The layout itself is
documented in ``docs/prepared-dataset.md``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

#: Name and version of the output format written into ``manifest.json``.
FORMAT_NAME = "brainnet-prepared-dataset"
FORMAT_VERSION = 3
#: Versions this reader opens (1: written before the manifest recorded array dtypes and shapes;
#: 2: before it recorded ``level`` and ``inputs``, read as a trial-level dataset with every input).
READABLE_VERSIONS: tuple[int, ...] = (1, 2, 3)

#: ``manifest["level"]``: ``"trial"`` (prepared from the NSD tree, one row per trial) or ``"image"``
#: (from the Algonauts 2023 release alone, one row per image). A manifest without it is ``"trial"``.
LEVELS: tuple[str, ...] = ("trial", "image")
#: ``manifest["inputs"]``: the inputs a dataset may lack (a manifest without the table has all of them).
#: trial_order: real session / run / slot columns; memory: a memory index with past images;
#: behaviour: ``behaviour.npy``; noise_ceiling: ``noise_ceiling.npy``.
INPUTS: tuple[str, ...] = ("trial_order", "memory", "behaviour", "noise_ceiling")

MANIFEST = "manifest.json"
IMAGES = "images/images.npy"
IMAGE_IDS = "images/nsd_ids.npy"
SURFACES = "surfaces/fsaverage.npz"
#: Per-subject files, ``<subject>/<name>``.
FMRI = "fmri.npy"
VERTEX_VALID = "vertex_valid.npy"
TRIALS = "trials.npz"
MEMORY_INDEX = "memory_index.npy"
BEHAVIOUR = "behaviour.npy"
NOISE_CEILING = "noise_ceiling.npy"
VERTICES = "vertices.npz"
ROIS = "rois.npz"
SUBJECT_FILES: tuple[str, ...] = (FMRI, VERTEX_VALID, TRIALS, MEMORY_INDEX, BEHAVIOUR, NOISE_CEILING,
                                  VERTICES, ROIS)
#: The per-subject file of each optional input (absent when the input is).
INPUT_FILES: dict[str, str] = {"behaviour": BEHAVIOUR, "noise_ceiling": NOISE_CEILING}


def subject_files(inputs: dict[str, bool]) -> tuple[str, ...]:
    """The per-subject files of a dataset with ``inputs`` (:data:`INPUTS` -> present)."""
    absent = {INPUT_FILES[k] for k, present in inputs.items() if not present and k in INPUT_FILES}
    return tuple(f for f in SUBJECT_FILES if f not in absent)

#: Split of each trial (``trials.npz["split"]``, int8).
SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2, "predict": 3}
#: Split names a consumer may ask for: the stored ones plus ``heldout`` (predict-split trials
#: whose image no other split shows).
SPLITS: tuple[str, ...] = (*SPLIT_CODES, "heldout")

#: Memory frames stored per trial in ``memory_index.npy`` (k = 0 current .. 32).
N_MEMORY_FRAMES = 33

#: The 35 behaviour columns: 21 per-trial features, then 7 of them (:data:`CARRIED`) for the
#: previous and 7 for the next showing of the same image (definitions in
#: :mod:`brainnet.data.prep.behaviour`).
BASE_NAMES: tuple[str, ...] = (
    "rt_z", "rt_session_z", "button", "changemind", "total1", "total2", "iscorrect",
    "iscorrect_current", "has_memory_recent", "has_memory_first", "isold_current",
    "log_minutes_recent_z", "log_minutes_recent_session_z", "log_minutes_first_z",
    "log_minutes_first_session_z", "log_trials_recent_z", "log_trials_recent_session_z",
    "log_trials_first_z", "log_trials_first_session_z", "run", "trial",
)
CARRIED: tuple[int, ...] = (0, 1, 2, 11, 12, 15, 16)
BEHAVIOUR_COLUMNS: tuple[str, ...] = (
    BASE_NAMES
    + tuple(f"prev_{BASE_NAMES[i]}" for i in CARRIED)
    + tuple(f"next_{BASE_NAMES[i]}" for i in CARRIED)
)
N_BEHAVIOUR = len(BEHAVIOUR_COLUMNS)  # 35
#: Column groups used by ablations: answer B, memory M, time T.
BEHAVIOUR_GROUPS: dict[str, tuple[int, ...]] = {
    "B": tuple(range(0, 8)) + tuple(range(21, 35)),
    "M": tuple(range(8, 19)),
    "T": (19, 20),
}


def subject_name(subject: int | str) -> str:
    """``1``, ``"1"``, ``"subj1"`` or ``"subj01"`` -> ``"subj01"``."""
    text = str(subject).strip().lower()
    match = re.fullmatch(r"(?:subj)?0*(\d+)", text)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"subject must look like 1 or 'subj01', got {subject!r}")
    return f"subj{int(match.group(1)):02d}"


def subject_number(subject: int | str) -> int:
    """``"subj03"`` -> ``3``."""
    return int(subject_name(subject)[4:])


def split_codes(split: str | Sequence[str]) -> list[int]:
    """Stored split name(s) or ``"all"`` -> their int codes (ValueError on an unknown name)."""
    names = list(SPLIT_CODES) if split == "all" else [split] if isinstance(split, str) else list(split)
    unknown = [s for s in names if s not in SPLIT_CODES]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; choose from {list(SPLIT_CODES)} or 'all'")
    return [SPLIT_CODES[s] for s in names]


def split_mask(split_col: np.ndarray, image: np.ndarray, split: str | Sequence[str]) -> np.ndarray:
    """Bool [n_trials]: the trials of ``split``.

    Args:
        split_col: int8 [n_trials] split codes; image: int [n_trials] image rows.
        split: a name of :data:`SPLITS`, a list of stored names, or ``"all"``. ``"heldout"``:
            predict-split trials whose image is shown in no other split.
    """
    split_col = np.asarray(split_col)
    if isinstance(split, str) and split == "heldout":
        predict = split_col == SPLIT_CODES["predict"]
        seen = np.unique(np.asarray(image)[~predict])
        return predict & ~np.isin(image, seen)
    try:
        codes = split_codes(split)
    except ValueError:
        raise ValueError(f"unknown split {split!r}; choose from {list(SPLITS)} or 'all'") from None
    return np.isin(split_col, codes)
