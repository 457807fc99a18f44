"""Data: external readers (:mod:`.formats`), the prepare pipeline (:mod:`.prep`), the prepared
dataset (:class:`PreparedDataset`, layout constants in :mod:`.layout`) and nsd-mini (:mod:`.mini`).

Names are imported on first use, so ``import brainnet.data.layout`` (models do) stays light.
"""

from __future__ import annotations

import importlib

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("BEHAVIOUR_COLUMNS", "BEHAVIOUR_GROUPS", "N_BEHAVIOUR", "SPLIT_CODES", "SPLITS", "split_mask",
                     "subject_name", "subject_number"), "layout"),
    **dict.fromkeys(("MiniData", "MiniNSDConfig", "ensure_mini", "make_mini_nsd"), "mini"),
    **dict.fromkeys(("PrepareConfig", "is_finished", "prepare"), "prep"),
    **dict.fromkeys(("PreparedDataset", "PreparedSubject", "prepared_root"), "prepared"),
    "TrialDataset": "trials",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'brainnet.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
