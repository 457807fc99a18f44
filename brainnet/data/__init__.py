"""Data: external readers (:mod:`.formats`), the prepare pipeline (:mod:`.prep`), the prepared
dataset (:class:`PreparedDataset`, layout constants in :mod:`.layout`) and nsd-mini (:mod:`.mini`).

Names are imported on first use, so ``import brainnet.data.layout`` (models do) stays light.
"""

from __future__ import annotations

from brainnet._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
