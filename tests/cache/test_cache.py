"""Token cache: equality with fresh tokens, keys that never go stale, RAM budget, memmap persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from brainnet.backbones import create_backbone
from brainnet.cache import CacheBudgetError, TokenCache, global_features, load_resized

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(24, 80, 80, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def bb():
    return create_backbone("brainnet-tiny-random", seed=0)


def fresh_tokens(bb, images, idx, pool):
    x = torch.stack([load_resized(images[i], bb.input_size) for i in idx]).float() / 255
    with torch.inference_mode():
        local, glob = bb.get_tokens(x)
    if pool is not None:
        local = {k: F.adaptive_avg_pool2d(v, (min(pool, v.shape[-2]), min(pool, v.shape[-1])))
                 for k, v in local.items()}
    return local, glob


@pytest.mark.parametrize("pool,workers,forward", [(8, 2, "workers"), (8, 1, "main"), (None, 0, "main")])
def test_cached_tokens_equal_fresh_ones(bb, images, pool, workers, forward):
    ids = [f"img{i}" for i in range(len(images))]
    cache = TokenCache(bb, pool=pool).fill(images, ids, batch_size=5, num_workers=workers, forward=forward,
                                           progress=False)
    pick = [7, 0, 23, 7]
    local, glob = cache.get([ids[i] for i in pick])
    want_l, want_g = fresh_tokens(bb, images, pick, pool)
    assert list(local) == bb.layer_names
    for name in bb.layer_names:
        assert local[name].dtype == torch.float16 and glob[name].dtype == torch.float16
        assert local[name].shape == want_l[name].shape
        torch.testing.assert_close(local[name].float(), want_l[name], atol=2e-3, rtol=2e-3)
        torch.testing.assert_close(glob[name].float(), want_g[name], atol=2e-3, rtol=2e-3)
    expect_hw = [min(8, g[0]) if pool else g[0] for g in bb.grid_sizes]
    assert [local[n].shape[-1] for n in bb.layer_names] == expect_hw
    assert cache.nbytes == len(images) * cache.bytes_per_image


def test_hits_misses_and_incremental_fill(bb, images):
    cache = TokenCache(bb, pool=4, layers=[1, 3])
    cache.fill(images[:10], ids=range(10), num_workers=0, progress=False)
    assert cache.stats["misses"] == 10 and cache.stats["computed"] == 10
    cache.fill(images, ids=range(24), num_workers=0, progress=False)  # 10 hits, 14 new rows (grown)
    assert cache.stats["hits"] == 10 and cache.stats["computed"] == 24 and len(cache) == 24
    local, _ = cache.get([3, 20])
    want, _ = fresh_tokens(bb, images, [3, 20], 4)
    assert list(local) == ["1", "3"]
    torch.testing.assert_close(local["3"].float(), want["3"], atol=2e-3, rtol=2e-3)
    with pytest.raises(KeyError, match="not cached"):
        cache.get([3, 99])


def test_key_changes_with_everything_that_changes_tokens(bb):
    base = TokenCache(bb, pool=8).key
    others = [
        TokenCache(create_backbone("brainnet-tiny-random", seed=1), pool=8).key,  # weights
        TokenCache(bb, pool=8, layers=[0, 1]).key,  # layers
        TokenCache(create_backbone("brainnet-tiny-random", seed=0, image_size=96), pool=8).key,  # input size
        TokenCache(create_backbone("brainnet-tiny-random", seed=0, layers=[0, 1, 2]), pool=8).key,  # backbone layers
        TokenCache(bb, pool=4).key,  # pooling
        TokenCache(bb, pool=8, namespace="other-dataset").key,  # dataset
    ]
    assert len({base, *others}) == len(others) + 1
    assert TokenCache(create_backbone("brainnet-tiny-random", seed=0), pool=8).key == base


def test_stale_memmap_cache_is_never_reused(images, tmp_path):
    a = create_backbone("brainnet-tiny-random", seed=0)
    b = create_backbone("brainnet-tiny-random", seed=1)
    TokenCache(a, storage="memmap", cache_dir=tmp_path).fill(images[:6], num_workers=0, progress=False)
    other = TokenCache(b, storage="memmap", cache_dir=tmp_path)
    assert len(other) == 0 and 0 not in other
    other.fill(images[:6], num_workers=0, progress=False)
    la, _ = TokenCache(a, storage="memmap", cache_dir=tmp_path).get([0])
    lb, _ = other.get([0])
    assert not torch.allclose(la["3"].float(), lb["3"].float())
    assert len(list(tmp_path.glob("tokens-*"))) == 2


def test_memmap_persists_and_matches_ram(bb, images, tmp_path):
    ram = TokenCache(bb, pool=8).fill(images, num_workers=0, progress=False)
    mm = TokenCache(bb, pool=8, storage="memmap", cache_dir=tmp_path)
    mm.fill(images[:12], ids=range(12), num_workers=2, batch_size=4, progress=False)
    del mm
    again = TokenCache(bb, pool=8, storage="memmap", cache_dir=tmp_path)
    assert len(again) == 12 and again.ids == list(range(12))
    again.fill(images, ids=range(24), num_workers=0, progress=False)
    assert again.stats["hits"] == 12 and again.stats["computed"] == 12
    reopened = TokenCache(bb, pool=8, storage="memmap", cache_dir=tmp_path)
    l1, g1 = reopened.get([0, 13, 23])
    l2, g2 = ram.get([0, 13, 23])
    for name in bb.layer_names:
        assert torch.equal(l1[name], l2[name]) and torch.equal(g1[name], g2[name])
    files = list(reopened.path.glob("*.f16"))
    assert sum(f.stat().st_size for f in files) == 24 * reopened.bytes_per_image


def test_budget_error_fires_before_any_large_allocation(bb, images, monkeypatch):
    allocations = []
    real_empty = torch.empty

    def tracking_empty(*size, **kw):
        out = real_empty(*size, **kw)
        allocations.append(out.numel())
        return out

    calls = []
    monkeypatch.setattr(torch, "empty", tracking_empty)
    monkeypatch.setattr(bb, "get_tokens", lambda *a, **k: calls.append(1))
    cache = TokenCache(bb, pool=8, budget_bytes=1000)  # one image needs ~28 kB
    with pytest.raises(CacheBudgetError, match="memmap"):
        cache.fill(images, num_workers=0, progress=False)
    assert not calls and all(n < 1000 for n in allocations)
    assert cache.nbytes == 0 and len(cache) == 0


def test_memmap_needs_dir_and_other_bad_input(bb, images):
    with pytest.raises(ValueError, match="cache_dir"):
        TokenCache(bb, storage="memmap")
    with pytest.raises(ValueError, match="storage"):
        TokenCache(bb, storage="disk")
    with pytest.raises(ValueError, match="pool"):
        TokenCache(bb, pool=0)
    cache = TokenCache(bb)
    with pytest.raises(ValueError, match="ids"):
        cache.fill(images[:3], ids=[1, 2], num_workers=0, progress=False)
    with pytest.raises(ValueError, match="unique"):
        cache.fill(images[:3], ids=[1, 1, 2], num_workers=0, progress=False)
    with pytest.raises(TypeError, match="int or str"):
        cache.fill(images[:2], ids=[1.5, 2.5], num_workers=0, progress=False)
    with pytest.raises(ValueError, match="forward"):
        cache.fill(images[:2], num_workers=0, forward="gpu", progress=False)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        cache.fill([np.zeros((8, 8, 4), np.uint8)], num_workers=0, progress=False)


def test_sequences_of_pil_images_and_files(bb, images, tmp_path):
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.png"
        Image.fromarray(images[i]).save(p)
        paths.append(str(p))
    from_files = TokenCache(bb).fill(paths, num_workers=0, progress=False)
    from_pil = TokenCache(bb).fill([Image.fromarray(im) for im in images[:4]], num_workers=0, progress=False)
    from_arr = TokenCache(bb).fill(images[:4], num_workers=0, progress=False)
    for c in (from_files, from_pil):
        assert torch.equal(c.get([0, 3])[0]["2"], from_arr.get([0, 3])[0]["2"])


def test_global_features_are_last_layer_globals(bb, images):
    feats = global_features(bb, images[:9], num_workers=0, progress=False)
    assert feats.shape == (9, bb.widths[-1]) and feats.dtype == torch.float16
    _, want = fresh_tokens(bb, images, range(9), None)
    torch.testing.assert_close(feats.float(), want[bb.layer_names[-1]], atol=2e-3, rtol=2e-3)
    only_global = TokenCache(bb, layers=[-1], store_local=False)
    assert only_global.bytes_per_image == 2 * bb.widths[-1]


def test_torch_threads_restored_after_the_block_and_after_an_error():
    from brainnet.cache.staging import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(KeyError), torch_threads(1):
        raise KeyError("x")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError), torch_threads(0):
        pass


def test_matmul_precision_set_for_cuda_fills_only_and_restored():
    from brainnet.cache.staging import matmul_precision

    before = torch.get_float32_matmul_precision()
    other = "medium" if before != "medium" else "high"
    with matmul_precision(torch.device("cuda"), other):  # a flag: no GPU needed to set it
        assert torch.get_float32_matmul_precision() == other
    assert torch.get_float32_matmul_precision() == before
    with matmul_precision(torch.device("cpu"), other):
        assert torch.get_float32_matmul_precision() == before
    with pytest.raises(ValueError, match="matmul_precision"):
        matmul_precision(torch.device("cuda"), "fast")


def test_fill_refuses_an_unknown_matmul_precision_before_any_work(tmp_path):
    cache = TokenCache(create_backbone("brainnet-tiny-random", seed=0), pool=8, storage="memmap", cache_dir=tmp_path)
    images = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="matmul_precision"):
        cache.fill(images, num_workers=0, progress=False, matmul_precision="fast")
    assert len(cache) == 0 and not list(tmp_path.rglob("*.f16"))
