"""Algonauts 2023 submission files: ``subjXX/{lh,rh}_pred_test.npy``.

Each file is float32 of shape (n_test_images, n_challenge_vertices of that hemisphere), rows in
the order of the subject's ``test_split/test_images`` listing (``test-NNNN_nsd-NNNNN.png``),
columns the challenge vertices in ascending mesh order (the prepared dataset's ``challenge``
vertices of that hemisphere).

A test image can be shown in several trials; its prediction is the mean over those trials (the
memory model's prediction depends on each trial's history and answers). A dataset prepared from
the Algonauts 2023 release alone holds one row per test image (split ``predict``, no fMRI): its
prediction is that row's. :func:`write_test_submission` does it all for a trained model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from brainnet.data.layout import subject_name
from brainnet.data.prepared import PreparedDataset

HEMIS = ("lh", "rh")

logger = logging.getLogger(__name__)


def algonauts_test_ids(algonauts_root: str | Path, subject) -> np.ndarray:
    """0-based NSD ids of a subject's Algonauts test images, in listing order (int64 (n,))."""
    from brainnet.data.formats.algonauts import AlgonautsLayout, list_images

    return list_images(AlgonautsLayout(algonauts_root).image_dir(subject, "test"), "test").nsd_ids


def submission_image_ids(data_dir: str | Path | PreparedDataset, subject, algonauts_root: str | Path | None = None
                   ) -> np.ndarray:
    """0-based NSD ids of a subject's Algonauts test images in the release's listing order (int64 (n,)).

    Read from ``algonauts_root``, by default the release the dataset was prepared from (the manifest's
    ``sources.algonauts_dir``). Without the release at hand: the NSD ids of the subject's ``predict``
    rows in row order (a dataset prepared from the release alone stores them in listing order).
    """
    dataset = PreparedDataset.open(data_dir)
    root = algonauts_root or dataset.manifest.get("sources", {}).get("algonauts_dir")
    if root and Path(root).is_dir():
        return algonauts_test_ids(root, subject)
    subj = dataset.subject(subject)
    rows = subj.split_rows("predict")
    if not rows.size:
        raise ValueError(f"{dataset.root}: {subj.name} has no predict rows and the Algonauts release "
                         f"({root or 'not recorded'}) is not at hand: give algonauts_root")
    logger.info("Algonauts release %s not found: test images from %s's predict rows", root, subj.name)
    _, first = np.unique(subj.image[rows], return_index=True)
    return dataset.image_ids[subj.image[rows][np.sort(first)]].astype(np.int64)


def image_rows(data_dir: str | Path | PreparedDataset, nsd_ids: np.ndarray) -> np.ndarray:
    """Rows of the prepared dataset's images holding the given NSD ids: int64 (len(nsd_ids),).

    ValueError naming the ids the dataset lacks.
    """
    ids = PreparedDataset.open(data_dir).image_ids
    pos = np.searchsorted(ids, nsd_ids)
    pos = np.clip(pos, 0, max(ids.size - 1, 0))
    missing = np.asarray(nsd_ids)[ids[pos] != nsd_ids] if ids.size else np.asarray(nsd_ids)
    if missing.size:
        raise ValueError(f"{missing.size} NSD ids are not in the prepared dataset (e.g. {missing[:5].tolist()})")
    return pos


def predict_images(model: torch.nn.Module, data_dir: str | Path | PreparedDataset, subject, features,
                   nsd_ids: np.ndarray, n_frames: int = 32, batch_size: int = 64) -> np.ndarray:
    """Predicted response to each image: mean over the subject's trials that showed it.

    Returns float32 (len(nsd_ids), V) in the order of ``nsd_ids``; every image must have a trial.
    """
    from .batches import EncodingDataset, SubjectTrials, pixels_for
    from .evaluate import predict_dataset

    name = subject_name(subject)
    data_dir = PreparedDataset.open(data_dir)
    st = SubjectTrials.load(data_dir, name)
    rows = image_rows(data_dir, np.asarray(nsd_ids, np.int64))
    shown = np.isin(st.image, rows)
    absent = np.setdiff1d(rows, st.image[shown])
    if absent.size:
        raise ValueError(f"{absent.size} images were never shown to {name}; cannot predict them from trials")
    ds = EncodingDataset(data_dir, [name], "all", features, n_frames, trial_filter={name: shown},
                         subject_trials={name: st}, images=pixels_for(model, data_dir))
    p = predict_dataset(model, ds, batch_size)[name]
    order = {int(r): k for k, r in enumerate(rows)}
    out = np.zeros((rows.size, p.pred.shape[1]), np.float64)
    counts = np.zeros(rows.size, np.int64)
    idx = np.fromiter((order[int(i)] for i in p.image), np.int64, count=p.image.size)
    np.add.at(out, idx, p.pred)
    np.add.at(counts, idx, 1)
    return (out / counts[:, None]).astype(np.float32)


def challenge_columns(data_dir: str | Path | PreparedDataset, subject) -> dict[str, np.ndarray]:
    """Per hemisphere, the columns (int64, into the subject's V vertices) of its challenge vertices."""
    subj = PreparedDataset.open(data_dir).subject(subject)
    hemi, challenge = subj.hemi, subj.challenge
    return {h: np.flatnonzero(challenge & (hemi == k)) for k, h in enumerate(HEMIS)}


def write_submission(predictions: dict, data_dir: str | Path | PreparedDataset,
                     out_dir: str | Path) -> dict[str, dict[str, Path]]:
    """Write ``out_dir/subjXX/{lh,rh}_pred_test.npy`` (float32) for each subject.

    Parameters
    ----------
    predictions : subject -> array (n_test_images, V) over the subject's selected vertices, rows
        in the Algonauts test listing order (e.g. from :func:`predict_images` with
        :func:`algonauts_test_ids`)
    data_dir : the prepared dataset (for the challenge vertices)
    out_dir : submission folder

    Returns dict subject -> {"lh": path, "rh": path}.
    """
    out_dir = Path(out_dir)
    dataset = PreparedDataset.open(data_dir)
    written = {}
    for subject, pred in predictions.items():
        name = subject_name(subject)
        pred = np.asarray(pred)
        cols = challenge_columns(dataset, name)
        n_v = dataset.subject(name).n_vertices
        if pred.ndim != 2 or pred.shape[1] != n_v:
            raise ValueError(f"{name}: predictions must be (n_test_images, V={n_v}), got {pred.shape}")
        if not np.isfinite(pred).all():
            raise ValueError(f"{name}: predictions contain NaN or inf")
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        written[name] = {}
        for h in HEMIS:
            path = folder / f"{h}_pred_test.npy"
            tmp = folder / f".{h}_pred_test.npy.tmp"
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(pred[:, cols[h]], dtype=np.float32))
            tmp.replace(path)
            written[name][h] = path
    return written


def load_submission(out_dir: str | Path, expected: dict | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Read a submission folder back: subject -> {"lh": (n, V_lh), "rh": (n, V_rh)} float32.

    ``expected``: optional subject -> {"n_images": int, "lh": int, "rh": int}; a mismatch in
    shape or dtype raises ValueError.
    """
    out_dir = Path(out_dir)
    subjects = sorted(p.name for p in out_dir.iterdir() if p.is_dir() and p.name.startswith("subj"))
    if not subjects:
        raise FileNotFoundError(f"no subjXX folders in {out_dir}")
    out = {}
    for s in subjects:
        out[s] = {}
        for h in HEMIS:
            arr = np.load(out_dir / s / f"{h}_pred_test.npy")
            if arr.dtype != np.float32 or arr.ndim != 2:
                raise ValueError(f"{s}/{h}_pred_test.npy must be float32 2-D, got {arr.dtype} {arr.shape}")
            out[s][h] = arr
        if out[s]["lh"].shape[0] != out[s]["rh"].shape[0]:
            raise ValueError(f"{s}: lh and rh have different image counts")
        if expected and s in expected:
            e = expected[s]
            got = {"n_images": out[s]["lh"].shape[0], "lh": out[s]["lh"].shape[1], "rh": out[s]["rh"].shape[1]}
            if any(got[k] != e[k] for k in e):
                raise ValueError(f"{s}: expected {e}, got {got}")
    return out


def write_test_submission(model: torch.nn.Module, data_dir: str | Path | PreparedDataset, features, out_dir: str | Path,
                          subjects=None, algonauts_root: str | Path | None = None,
                          n_frames: int = 32) -> dict[str, dict[str, Path]]:
    """Predict every subject's Algonauts test images (:func:`submission_image_ids`, :func:`predict_images`) and
    write the submission (:func:`write_submission`); ``subjects`` default: the model's (``model.subjects``)
    or the dataset's. Returns dict subject -> {"lh": path, "rh": path}."""
    dataset = PreparedDataset.open(data_dir)
    subjects = subjects or getattr(model, "subjects", None) or dataset.subjects
    preds = {subject_name(s): predict_images(model, dataset, s, features,
                                             submission_image_ids(dataset, s, algonauts_root), n_frames)
             for s in subjects}
    return write_submission(preds, dataset, out_dir)
