"""Data: external readers (:mod:`.formats`), the prepare pipeline (:mod:`.prep`), the prepared
dataset (:class:`PreparedDataset`, layout constants in :mod:`.layout`) and nsd-mini (:mod:`.mini`)."""

from brainnet.data.layout import (
    BEHAVIOUR_COLUMNS,
    BEHAVIOUR_GROUPS,
    N_BEHAVIOUR,
    SPLIT_CODES,
    SPLITS,
    split_mask,
    subject_name,
    subject_number,
)
from brainnet.data.mini import MiniData, MiniNSDConfig, ensure_mini, make_mini_nsd
from brainnet.data.prep import PrepareConfig, is_finished, prepare
from brainnet.data.prepared import PreparedDataset, PreparedSubject
from brainnet.data.trials import TrialDataset

__all__ = [
    "BEHAVIOUR_COLUMNS", "BEHAVIOUR_GROUPS", "N_BEHAVIOUR", "SPLIT_CODES", "SPLITS",
    "MiniData", "MiniNSDConfig", "PrepareConfig", "PreparedDataset", "PreparedSubject", "TrialDataset",
    "ensure_mini", "is_finished", "make_mini_nsd", "prepare", "split_mask", "subject_name", "subject_number",
]
