"""PreparedDataset (open-time checks, verify, lazy arrays) and TrialDataset on the tiny nsd-mini dataset."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from brainnet.data import PreparedDataset, TrialDataset
from brainnet.data.trials import INPUTS
from brainnet.errors import DataFormatError

from _mini_cache import prepared_tiny


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return prepared_tiny(tmp_path_factory)


def test_items_hold_the_prepared_arrays(root):
    ds = TrialDataset(root, "subj01", split="train")
    with np.load(root / "subj01/trials.npz") as t:
        split, image = t["split"], t["image"]
    assert len(ds) == int((split == 0).sum()) > 0
    fmri = np.load(root / "subj01/fmri.npy")
    mem = np.load(root / "subj01/memory_index.npy")
    beh = np.load(root / "subj01/behaviour.npy")
    images = np.load(root / "images/images.npy")
    for i in (0, len(ds) // 2, -1):
        item = ds[i]
        trial = item["trial"]
        assert set(item) == set(INPUTS) | {"subject", "trial"} and item["subject"] == 1
        assert split[trial] == 0 and item["image_index"] == image[trial]
        assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 32, 32)
        assert item["image"].min() >= 0.0 and item["image"].max() <= 1.0
        np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy() * 255, images[image[trial]], atol=1e-3)
        assert item["memory_index"].dtype == torch.int64 and item["memory_index"].shape == (33,)
        np.testing.assert_array_equal(item["memory_index"].numpy(), mem[trial])
        assert item["behaviour"].dtype == torch.float32 and item["behaviour"].shape == (35,)
        np.testing.assert_array_equal(item["behaviour"].numpy(), beh[trial])
        assert item["fmri"].dtype == torch.float32
        np.testing.assert_array_equal(item["fmri"].numpy(), fmri[trial].astype(np.float32))
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_split_and_input_switches(root):
    info = PreparedDataset(root)
    n = info.subject("subj02").n_trials
    assert len(TrialDataset(root, 2, split="all")) == n
    parts = [len(TrialDataset(root, "subj02", split=s)) for s in ("train", "val", "test", "predict")]
    assert sum(parts) == n and parts == [info.manifest["subjects"]["subj02"]["split_trials"][s]
                                         for s in ("train", "val", "test", "predict")]
    assert len(TrialDataset(root, 2, split=["val", "test"])) == parts[1] + parts[2]
    item = TrialDataset(root, 2, split="predict", inputs=("fmri", "image"), image_dtype="uint8")[3]
    assert set(item) == {"fmri", "image", "subject", "trial"} and item["subject"] == 2
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 32, 32)
    assert item["fmri"].shape == (info.subject("subj02").n_vertices,)
    with pytest.raises(ValueError, match="unknown split"):
        TrialDataset(root, 1, split="training")
    with pytest.raises(ValueError, match="unknown inputs"):
        TrialDataset(root, 1, inputs=("pixels",))


def test_dataloader_workers_and_pickling(root):
    ds = TrialDataset(root, "subj01", split="train", inputs=("fmri", "memory_index", "image_index"))
    ds[0]  # opens memmaps in this process; they must not travel with the pickle
    clone = pickle.loads(pickle.dumps(ds))
    assert "fmri" not in clone.prepared.__dict__ and torch.equal(clone[5]["fmri"], ds[5]["fmri"])
    loader = DataLoader(ds, batch_size=16, num_workers=2, shuffle=False)
    batches = list(loader)
    fmri = torch.cat([b["fmri"] for b in batches])
    assert fmri.shape == (len(ds), ds[0]["fmri"].shape[0])
    assert torch.equal(torch.cat([b["trial"] for b in batches]), torch.as_tensor(ds.trials))


def sub_of(info):
    return info.subject("subj01")


def test_prepared_dataset_and_unfinished_root(root, tmp_path):
    info = PreparedDataset(root)
    assert set(info.subjects) == {"subj01", "subj02"} and info.subject(1) is sub_of(info)
    sub = info.subject("subj01")
    assert sub.n_vertices == info.manifest["subjects"]["subj01"]["n_vertices"] == sub.vertices["sphere"].shape[0]
    assert set(sub.trials) == {"session", "run", "trial", "slot", "nsd_id", "image", "split"}
    with pytest.raises(FileNotFoundError, match="not a finished prepared dataset"):
        PreparedDataset(tmp_path)
    with pytest.raises(FileNotFoundError):
        TrialDataset(tmp_path, 1)


def _copy(root, dst):
    import shutil

    shutil.copytree(root, dst)
    return dst


def test_manifest_records_npy_dtype_and_shape(root):
    data = PreparedDataset(root)
    entry = data.manifest["files"]["subj01/fmri.npy"]
    subj = data.subject(1)
    assert entry["dtype"] == "<f2" and entry["shape"] == [subj.n_trials, subj.n_vertices]
    assert subj.fmri.shape == tuple(entry["shape"]) and isinstance(subj.fmri, np.memmap)
    assert subj.memory_index.shape == (subj.n_trials, 33) and subj.behaviour.shape == (subj.n_trials, 35)
    labels, names = subj.roi_labels("prf-visualrois")
    assert labels.shape == (subj.n_vertices,) and names[0] == "Unknown"
    assert np.array_equal(subj.split_rows("all"), np.arange(subj.n_trials))


@pytest.mark.parametrize("damage", ["truncate", "dtype", "missing", "manifest"])
def test_bad_files_are_named_on_open(root, tmp_path, damage):
    bad = _copy(root, tmp_path / "copy")
    fmri = bad / "subj02/fmri.npy"
    if damage == "truncate":
        with open(fmri, "r+b") as fh:
            fh.truncate(fmri.stat().st_size - 10)
        with pytest.raises(DataFormatError, match="subj02/fmri.npy"):
            PreparedDataset(bad)
    elif damage == "dtype":
        arr = np.load(fmri)
        np.save(fmri, arr.astype(np.float32)[:, : arr.shape[1] // 2])  # same byte count, other dtype / shape
        import json

        manifest = json.loads((bad / "manifest.json").read_text())
        manifest["files"]["subj02/fmri.npy"]["bytes"] = fmri.stat().st_size
        (bad / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(DataFormatError, match=r"subj02/fmri.npy: expected float16"):
            PreparedDataset(bad)
    elif damage == "missing":
        (bad / "subj01/behaviour.npy").unlink()
        with pytest.raises(DataFormatError, match="subj01/behaviour.npy.*no such file"):
            PreparedDataset(bad)
    else:
        (bad / "manifest.json").write_text("{not json")
        with pytest.raises(DataFormatError, match="manifest.json"):
            PreparedDataset(bad)


def test_verify_rehashes_every_file(root, tmp_path):
    bad = _copy(root, tmp_path / "copy")
    n = PreparedDataset(bad).verify()
    assert n == len(PreparedDataset(bad).manifest["files"])
    beh = bad / "subj01/behaviour.npy"
    arr = np.load(beh)
    arr[0, 0] += 1.0  # same size and header: only the hash can tell
    np.save(beh, arr)
    data = PreparedDataset(bad)
    with pytest.raises(DataFormatError, match="subj01/behaviour.npy: expected sha256"):
        data.verify()


def test_format_1_datasets_still_open(root, tmp_path):
    import json

    old = _copy(root, tmp_path / "copy")
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 1
    for entry in manifest["files"].values():
        entry.pop("dtype", None), entry.pop("shape", None)
    (old / "manifest.json").write_text(json.dumps(manifest))
    data = PreparedDataset(old)
    assert data.subject(2).fmri.shape[0] == data.subject(2).n_trials
    manifest["format_version"] = 99
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataFormatError, match="re-run `brainnet prepare`"):
        PreparedDataset(old)


def test_subjects_pickle_without_open_arrays(root):
    subj = PreparedDataset(root).subject(1)
    _ = subj.fmri, subj.trials
    clone = pickle.loads(pickle.dumps(subj))
    assert "fmri" not in clone.__dict__ and np.array_equal(clone.fmri, subj.fmri)
