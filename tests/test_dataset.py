"""PreparedDataset / load_prepared on the prepared tiny nsd-mini dataset."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from brainnet.data.dataset import INPUTS, PreparedDataset, load_prepared

from _mini_cache import prepared_tiny


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return prepared_tiny(tmp_path_factory)


def test_items_hold_the_prepared_arrays(root):
    ds = PreparedDataset(root, "subj01", split="train")
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
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
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
    info = load_prepared(root)
    n = info.subjects["subj02"].n_trials
    assert len(PreparedDataset(root, 2, split="all")) == n
    parts = [len(PreparedDataset(root, "subj02", split=s)) for s in ("train", "val", "test", "predict")]
    assert sum(parts) == n and parts == [info.manifest["subjects"]["subj02"]["split_trials"][s]
                                         for s in ("train", "val", "test", "predict")]
    assert len(PreparedDataset(root, 2, split=["val", "test"])) == parts[1] + parts[2]
    item = PreparedDataset(root, 2, split="predict", inputs=("fmri", "image"), image_dtype="uint8")[3]
    assert set(item) == {"fmri", "image", "subject", "trial"} and item["subject"] == 2
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 32, 32)
    assert item["fmri"].shape == (info.subjects["subj02"].n_vertices,)
    with pytest.raises(ValueError, match="unknown split"):
        PreparedDataset(root, 1, split="training")
    with pytest.raises(ValueError, match="unknown inputs"):
        PreparedDataset(root, 1, inputs=("pixels",))


def test_dataloader_workers_and_pickling(root):
    ds = PreparedDataset(root, "subj01", split="train", inputs=("fmri", "memory_index", "image_index"))
    ds[0]  # opens memmaps in this process; they must not travel with the pickle
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._arrays == {} and torch.equal(clone[5]["fmri"], ds[5]["fmri"])
    loader = DataLoader(ds, batch_size=16, num_workers=2, shuffle=False)
    batches = list(loader)
    fmri = torch.cat([b["fmri"] for b in batches])
    assert fmri.shape == (len(ds), ds[0]["fmri"].shape[0])
    assert torch.equal(torch.cat([b["trial"] for b in batches]), torch.as_tensor(ds.trials))


def test_load_prepared_and_unfinished_root(root, tmp_path):
    info = load_prepared(root)
    assert set(info.subjects) == {"subj01", "subj02"}
    sub = info.subjects["subj01"]
    assert sub.n_vertices == info.manifest["subjects"]["subj01"]["n_vertices"] == sub.vertices["sphere"].shape[0]
    assert set(sub.trials) == {"session", "run", "trial", "slot", "nsd_id", "image", "split"}
    with pytest.raises(FileNotFoundError, match="not a finished prepared dataset"):
        load_prepared(tmp_path)
    with pytest.raises(FileNotFoundError):
        PreparedDataset(tmp_path, 1)
