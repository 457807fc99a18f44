"""GPU checks (marker ``gpu``; every test skips without CUDA): mixed precision, no host-device
synchronisation in the model's step, the token cache on the GPU, LoRA in the loop, Lightning.

Run on a machine with a GPU: ``python -m pytest -m gpu tests/test_gpu.py`` (``benchmarks/device_check.py``
does, and records the counts). Batches are random but hold what
:class:`brainnet.training.batches.EncodingDataset` produces (keys, shapes, dtypes: fp16 tokens,
float32 memory vectors / behaviour / fMRI, bool ``memory_valid``, the subject's name).
"""

from __future__ import annotations

import copy
import tempfile
import warnings

import numpy as np
import pytest
import torch

from brainnet.data.layout import N_BEHAVIOUR

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = torch.device("cuda")
SUBJECT = "subj01"
N_VERTICES = 3000
N_FRAMES = 8
#: a small MemModel (every branch on); dropout off so that two forwards of one batch agree
SMALL_MODEL = dict(width=32, conv_blocks=1, mlp_hidden=64, memory_hidden=64, frame_dim=16, t1_dim=16,
                   memory_out=32, behaviour_hidden=32, behaviour_out=16, time_dim=8, n_memory_frames=N_FRAMES,
                   dropout=0.0, chunk_size=1024)
LAYERS = ("a", "b")
CHANNELS = (48, 96)
MEMORY_DIM = 96
#: bf16 keeps 8 bits of mantissa (relative rounding 2**-9 ~ 2e-3 per operation); a loss summed
#: over thousands of vertices after a few layers stays within 2e-2 of the fp32 value
BF16_RTOL = 2e-2
#: GPU vs CPU cache fill: convolutions run in TF32 on the GPU by default (10-bit mantissa,
#: ~5e-4 relative per product) and attention runs fused kernels that sum in another order; both
#: exceed fp16 rounding (~5e-4) after a dozen blocks, so the check allows 1e-2 of the layer's norm
CACHE_RTOL = 1e-2


def _model(seed: int = 0, channels=CHANNELS, layers=LAYERS):
    """SMALL_MODEL for N_VERTICES random points of a sphere of radius 100 (one subject)."""
    from brainnet.models import MemConfig, MemModel

    xyz = np.random.default_rng(seed).normal(size=(N_VERTICES, 3))
    coords = {SUBJECT: (100 * xyz / np.linalg.norm(xyz, axis=1, keepdims=True)).astype(np.float32)}
    hemi = {SUBJECT: (np.arange(N_VERTICES) % 2).astype(np.int64)}
    torch.manual_seed(seed)
    cfg = MemConfig(in_channels=tuple(channels), layer_names=tuple(layers), memory_dim=MEMORY_DIM, **SMALL_MODEL)
    return MemModel(cfg, coords, hemi)


def _batch(b: int = 16, seed: int = 0, grid: int = 8, device=None) -> dict:
    """A random batch with the keys, shapes and dtypes EncodingDataset gives (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    valid = torch.rand(b, N_FRAMES, generator=g) > 0.2
    batch = {
        "subject": SUBJECT,
        "local": {n: torch.randn(b, c, grid, grid, generator=g).half() for n, c in zip(LAYERS, CHANNELS)},
        "global": {n: torch.randn(b, c, generator=g).half() for n, c in zip(LAYERS, CHANNELS)},
        "memory": torch.randn(b, N_FRAMES, MEMORY_DIM, generator=g) * valid[..., None],
        "memory_valid": valid,
        "behaviour": torch.randn(b, N_BEHAVIOUR, generator=g),
        "memory_behaviour": torch.randn(b, N_FRAMES, N_BEHAVIOUR, generator=g) * valid[..., None],
        "fmri": torch.randn(b, N_VERTICES, generator=g),
        "trial": torch.arange(b),
        "image": torch.arange(b),
    }
    return _to(batch, CUDA if device is None else device)


def _to(batch, device):
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch.to(device) if isinstance(batch, torch.Tensor) else batch


def _step(model, opt, batch, vertex_idx=None, bf16: bool = False) -> torch.Tensor:
    """The model's own training step: forward, loss, backward, optimiser step (as EncoderModule)."""
    from brainnet.training.optim import encoding_loss

    target = batch["fmri"] if vertex_idx is None else batch["fmri"][:, vertex_idx]
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        pred = model(batch, vertex_idx)
    loss = encoding_loss(pred, target, "smooth_l1", 0.01)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


# ---------------------------------------------------------------- mixed precision
def test_bf16_loss_within_2pc_of_fp32():
    model = _model().to(CUDA).train()
    batch = _batch()
    with torch.no_grad():
        fp32 = _loss(model, batch, bf16=False)
        bf16 = _loss(model, batch, bf16=True)
    assert torch.isfinite(bf16)
    assert abs(float(bf16) - float(fp32)) <= BF16_RTOL * abs(float(fp32))


def _loss(model, batch, bf16: bool) -> torch.Tensor:
    from brainnet.training.optim import encoding_loss

    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        pred = model(batch)
    assert pred.shape == batch["fmri"].shape
    return encoding_loss(pred, batch["fmri"], "smooth_l1", 0.01)


def test_bf16_training_step_matches_fp32():
    """Same weights, same batch: the bf16-mixed step's gradients point the fp32 step's way
    (cosine > 0.99 for every parameter with a gradient) and after three AdamW steps the
    predictions agree (correlation > 0.99, loss within 2e-2)."""
    ref = _model().to(CUDA).train()
    mixed = copy.deepcopy(ref)
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in (ref, mixed)]
    batches = [_batch(seed=s) for s in range(3)]
    for k, batch in enumerate(batches):
        _step(ref, opts[0], batch, bf16=False)
        _step(mixed, opts[1], batch, bf16=True)
        if k == 0:
            for (name, p), q in zip(ref.named_parameters(), mixed.parameters()):
                if p.grad is None or p.grad.abs().max() == 0:
                    continue
                cos = torch.nn.functional.cosine_similarity(p.grad.flatten(), q.grad.flatten(), dim=0)
                assert cos > 0.99, f"{name}: gradient cosine {float(cos):.4f}"
    test = _batch(seed=99)
    with torch.no_grad():
        a, b = ref(test), mixed(test)
        la, lb = _loss(ref, test, False), _loss(mixed, test, False)
    r = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
    assert r > 0.99
    assert abs(float(la) - float(lb)) <= BF16_RTOL * abs(float(la))


# ---------------------------------------------------------------- no host-device synchronisation
@pytest.mark.parametrize("subset", [False, True], ids=["all-vertices", "vertex-subset"])
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_training_step_does_not_synchronise(subset, bf16):
    """Forward, loss, backward and the optimiser step queue GPU work without waiting for it:
    ``torch.cuda.set_sync_debug_mode("error")`` raises on any synchronising call. The batch is
    on the GPU first (as Lightning moves it) and one step warms up (lazy initialisation)."""
    model = _model().to(CUDA).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = _batch()
    idx = torch.randperm(N_VERTICES, device=CUDA)[:1000] if subset else None
    _step(model, opt, batch, idx, bf16)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            loss = _step(model, opt, batch, idx, bf16)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()


# ---------------------------------------------------------------- token cache on the GPU
@pytest.mark.parametrize("name,size", [("brainnet-tiny", 64), ("timm:vit_tiny_patch16_224-random", 224)])
def test_cache_fills_on_gpu_like_cpu(name, size):
    """The same backbone fills the cache on the GPU and on the CPU; every layer's tokens agree
    within CACHE_RTOL of the layer's norm (see CACHE_RTOL for why not fp16 rounding)."""
    from brainnet.cache import TokenCache
    from brainnet.training.features import resolve_backbone

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        cpu_bb = resolve_backbone(name, image_size=size)
    gpu_bb = copy.deepcopy(cpu_bb).to(CUDA)
    images = np.random.default_rng(0).integers(0, 256, size=(24, size, size, 3), dtype=np.uint8)
    on_cpu = TokenCache(cpu_bb, pool=4).fill(images, batch_size=8, num_workers=0, progress=False, forward="main")
    on_gpu = TokenCache(gpu_bb, pool=4).fill(images, batch_size=8, num_workers=0, progress=False)
    assert on_gpu.device.type == "cuda" and on_gpu.key == on_cpu.key
    for got, want in zip(on_gpu.get(range(24)), on_cpu.get(range(24))):
        assert set(got) == set(want) and got
        for layer in want:
            g, w = got[layer].float(), want[layer].float()
            assert g.dtype == w.dtype and g.shape == w.shape
            rel = float((g - w).norm() / w.norm().clamp_min(1e-12))
            assert rel <= CACHE_RTOL, f"{name} layer {layer}: relative difference {rel:.2e}"


@pytest.mark.parametrize("storage", ["memmap", "ram"])
def test_gpu_fill_stages_rows_in_order(storage):
    """The GPU fill writes each batch through pinned buffers and a writer thread (brainnet/cache/staging.py):
    with full fp32 products (``matmul_precision="highest"``) its rows equal the same backbone's tokens
    computed batch by batch and copied straight to the host (to fp16 rounding: cuDNN may pick another
    algorithm); 5 batches, the last one short, memmap (rows written in place) and RAM storage, shuffled ids."""
    from brainnet.cache import TokenCache, pool_map
    from brainnet.training.features import resolve_backbone

    torch.manual_seed(0)
    bb = resolve_backbone("brainnet-tiny", image_size=64).to(CUDA)
    images = np.random.default_rng(1).integers(0, 256, size=(70, 64, 64, 3), dtype=np.uint8)
    ids = [int(i) for i in np.random.default_rng(2).permutation(1000)[:70]]
    with tempfile.TemporaryDirectory() as tmp:
        threads = torch.get_num_threads()
        cache = TokenCache(bb, pool=4, storage=storage, cache_dir=tmp if storage == "memmap" else None).fill(
            images, ids=ids, batch_size=16, num_workers=2, progress=False, matmul_precision="highest")
        assert torch.get_num_threads() == threads  # the fill's thread limit is undone
        local, glob = cache.get(ids)
    with torch.inference_mode():
        for lo in range(0, 70, 16):
            x = torch.from_numpy(images[lo:lo + 16]).permute(0, 3, 1, 2).to(CUDA).float().div_(255.0)
            want_local, want_glob = bb.get_tokens(x, layers=cache.layers)
            rows = slice(lo, lo + len(x))
            for n in cache.layers:  # a row out of place or overwritten differs by O(1), not by rounding
                want = pool_map(want_local[n], 4).half().cpu()
                torch.testing.assert_close(local[n][rows], want, rtol=2e-3, atol=2e-3)
                torch.testing.assert_close(glob[n][rows], want_glob[n].half().cpu(), rtol=2e-3, atol=2e-3)


# ---------------------------------------------------------------- LoRA in the loop
def test_lora_in_loop_step_runs():
    """TrainConfig(lora_rank=4): BackboneInLoop trains LoRA factors inside a frozen ViT on the GPU
    in bf16; the base weights do not move, the LoRA factors and the encoding model do."""
    from brainnet.backbones import create_backbone
    from brainnet.models import BackboneInLoop
    from brainnet.training.batches import FeatureSet
    from brainnet.training.config import TrainConfig
    from brainnet.training.fit import adapt_config

    torch.manual_seed(0)
    bb = create_backbone("timm:vit_tiny_patch16_224-random", image_size=64, layers=[1, 3])
    feats = FeatureSet({n: np.zeros((1, c, 4, 4), np.float16) for n, c in zip(bb.layer_names, bb.widths)},
                       {n: np.zeros((1, c), np.float16) for n, c in zip(bb.layer_names, bb.widths)},
                       torch.zeros(1, MEMORY_DIM))
    acfg = adapt_config(TrainConfig(lora_rank=4, pool=4), feats)
    net = BackboneInLoop(bb, _model(channels=feats.in_channels, layers=feats.layer_names), acfg).to(CUDA)
    assert net.n_trainable()["lora"] > 0
    batch = _batch(b=8)
    batch.pop("local"), batch.pop("global")
    batch["pixels"] = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8, device=CUDA)
    frozen = {n: p.detach().clone() for n, p in net.backbone.named_parameters() if not p.requires_grad}
    lora = {n: p.detach().clone() for n, p in net.named_parameters() if "lora_" in n}
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    losses = [float(_step(net, opt, batch, bf16=True)) for _ in range(3)]
    assert np.isfinite(losses).all()
    for n, p in net.backbone.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen {n} changed"
    assert any(not torch.equal(p, lora[n]) for n, p in net.named_parameters() if n in lora)


# ---------------------------------------------------------------- Lightning
class _Batches(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int):
        self.items = [_batch(seed=seed + k, device="cpu") for k in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, k):
        return self.items[k]


def test_lightning_trains_on_one_gpu_in_bf16():
    """EncoderModule under pl.Trainer(accelerator="gpu", devices=1) with the precision
    TrainConfig picks on CUDA (bf16-mixed): batches reach the GPU, steps run, validation scores."""
    import pytorch_lightning as pl

    from brainnet.training.config import TrainConfig
    from brainnet.training.fit import _precision
    from brainnet.training.module import EncoderModule

    cfg = TrainConfig(lr=1e-3, warmup_steps=1, vertices_per_step=1000, max_epochs=1)
    precision = _precision(cfg, "gpu")
    assert precision == ("bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed")
    module = EncoderModule(_model(), cfg)
    trainer = pl.Trainer(accelerator="gpu", devices=1, precision=precision, max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    load = dict(batch_size=None, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, torch.utils.data.DataLoader(_Batches(4, 0), **load),
                    torch.utils.data.DataLoader(_Batches(2, 10), **load))
    assert trainer.global_step == 4
    assert trainer.strategy.root_device.type == "cuda"
    assert len(module.history) == 1 and np.isfinite(module.history[0]["val_r"])


def test_ddp_strategy_is_constructed_for_the_gpu():
    """The DDP strategy object builds with a one-GPU Trainer (the multi-GPU path of TrainConfig.strategy)."""
    import pytorch_lightning as pl
    from pytorch_lightning.strategies import DDPStrategy

    strategy = DDPStrategy(process_group_backend="nccl")
    trainer = pl.Trainer(accelerator="gpu", devices=1, strategy=strategy, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False)
    assert trainer.strategy is strategy
    assert trainer.strategy.root_device == torch.device("cuda", 0)
    assert trainer.num_devices == 1 and trainer.strategy.process_group_backend == "nccl"
