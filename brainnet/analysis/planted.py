"""More planted-truth look-ups for nsd-mini (the per-vertex ones are in :mod:`.truth`).

* :func:`find_ground_truth` — the ``ground_truth.npz`` a prepared dataset was made from (None
  for real data);
* :func:`planted_lag_profile` / :func:`planted_peak_lag` — the planted memory lag profile and
  the lag a per-lag r profile should peak at; :func:`planted_hippocampus_lag_profile` — the
  hippocampal voxels' own profile (nsd-mini with a func1mm volume);
* :func:`planted_memory_feature` — the remembered feature of each prepared image row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainnet.data.mini.truth import read_truth
from brainnet.data.prepared import PreparedDataset

__all__ = ["find_ground_truth", "planted_hippocampus_lag_profile", "planted_lag_profile", "planted_memory_feature",
           "planted_peak_lag"]


def find_ground_truth(data_dir: str | Path | PreparedDataset) -> Path | None:
    """``ground_truth.npz`` of the nsd-mini tree a prepared dataset was made from, or None.

    Looks in the nsd-mini folder the manifest records (``sources.nsd_mini_root``: also a dataset
    prepared from nsd-mini's Algonauts tree alone) and next to its NSD root (``sources.nsd_dir``);
    real data has no such file and gives None. FileNotFoundError when ``data_dir`` is not a finished dataset.
    """
    sources = PreparedDataset.open(data_dir).manifest.get("sources", {})
    folders = [Path(sources["nsd_mini_root"])] if sources.get("nsd_mini_root") else []
    if sources.get("nsd_dir"):
        folders.append(Path(sources["nsd_dir"]).parent)
    return next((f / "ground_truth.npz" for f in folders if (f / "ground_truth.npz").is_file()), None)


def planted_lag_profile(ground_truth: str | Path) -> np.ndarray:
    """float64 (33,): planted weight of the image k slots back (k = 0..32; entry 0 = 0)."""
    return read_truth(ground_truth, ("memory_lag_profile",))["memory_lag_profile"].astype(np.float64)


def planted_hippocampus_lag_profile(ground_truth: str | Path) -> np.ndarray | None:
    """float64 (33,): planted weight of the image k slots back in the hippocampal voxels (k = 0..32,
    entry 0 = 0), or None when the nsd-mini tree has no func1mm volume."""
    try:
        profile = read_truth(ground_truth, ("hippocampus_lag_profile",))["hippocampus_lag_profile"]
    except KeyError:
        return None
    return profile.astype(np.float64)


def planted_peak_lag(profile: np.ndarray, window: tuple[int, int] | None = None) -> int:
    """Lag of the largest |weight| of a planted profile (within ``window`` (low, high) when given).

    |weight| because a per-lag r profile measures how strongly the lag-k image drives the
    response, not the sign of the drive.
    """
    profile = np.asarray(profile, dtype=np.float64)
    if profile.ndim != 1 or len(profile) < 2:
        raise ValueError(f"profile must have shape (n_lags,), got {profile.shape}")
    lags = np.arange(len(profile))
    keep = np.ones(len(profile), bool) if window is None else (lags >= window[0]) & (lags <= window[1])
    if not keep.any():
        raise ValueError(f"window {window} holds no lag of a {len(profile)}-lag profile")
    return int(lags[keep][np.argmax(np.abs(profile[keep]))])


def planted_memory_feature(ground_truth: str | Path, data_dir: str | Path | PreparedDataset) -> np.ndarray:
    """float32 (n_images,): the remembered feature of each prepared image row (by its 73k id)."""
    ids = PreparedDataset.open(data_dir).image_ids
    feature = read_truth(ground_truth, ("memory_feature",))["memory_feature"]
    if ids.max() >= len(feature):
        raise ValueError(f"image id {ids.max()} outside the ground truth's pool ({len(feature)} images)")
    return feature[ids].astype(np.float32)
