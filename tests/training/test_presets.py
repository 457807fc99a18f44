"""Named training presets: the settings that define ``mem-algonauts2023``, and that it trains."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from brainnet.training.config import TrainConfig
from brainnet.training.presets import PRESETS

from _mini_cache import prepared_tiny

PRESET = "mem-algonauts2023"


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="mem-algonauts2023"):
        TrainConfig.preset("no-such-recipe")
    assert PRESET in PRESETS


def test_changes_override_fields_and_merge_model_options():
    cfg = TrainConfig.preset(PRESET, max_steps=7, backbone="timm:vit_base_patch14_dinov2-random",
                             model_options={"grid_size": 4})
    assert (cfg.max_steps, cfg.backbone) == (7, "timm:vit_base_patch14_dinov2-random")
    assert cfg.model_options["grid_size"] == 4 and cfg.model_options["conv_kernel"] == 5
    assert TrainConfig.preset(PRESET).model_options["grid_size"] == 16  # the registry hands out fresh dicts


def test_mem_preset_defining_settings():
    cfg = TrainConfig.preset(PRESET)
    opt = cfg.model_options
    # DINOv2-B/14 at 224 px: a 16 x 16 patch grid, kept unpooled; layers 2, 5, 8, 11
    assert (cfg.backbone, cfg.image_size, cfg.layers, cfg.pool) == ("dinov2-vitb14", 224, (2, 5, 8, 11), 16)
    assert 224 // 14 == opt["grid_size"] == 16
    assert (opt["conv_head"], opt["conv_kernel"], opt["conv_blocks"], opt["width"]) == ("input_width", 5, 2, 192)
    assert (opt["global_head"], opt["global_pool"]) == ("mlp", "maxavg_nonlast")
    assert opt["per_subject_selectors"] and opt["selector_bias"] and opt["selector_init"] == "random"
    assert opt["jitter"] == 0.01 and opt["readout_init"] == "linear"
    assert opt["pe_min_period"] == pytest.approx(2 * math.pi)
    assert opt["pe_max_period"] == pytest.approx(2 * math.pi * 100 ** (31 / 32))
    # adapters: LoRA rank 4, scale 0.2 on qkv / proj / fc1 / fc2; gated AdaLN bounded by 0.5 tanh
    assert cfg.lora_rank == 4 and cfg.lora_alpha / cfg.lora_rank == pytest.approx(0.2)
    assert {t.rsplit(".", 1)[-1] for t in cfg.lora_targets} == {"qkv", "proj", "fc1", "fc2"}
    assert cfg.adaln_zero and cfg.adaln_gates and cfg.adaln_bound == 0.5
    # the previous image through its own DINOv2-S/14 (layer 11 CLS), with its own adapters
    assert (cfg.t1_backbone, cfg.t1_layer, opt["separate_t1"], opt["t1_dim"]) == ("dinov2-vits14", 11, True, 64)
    # memory frames from a raw DINOv2-L cache
    assert (cfg.memory_backbone, cfg.standardize_memory, opt["n_memory_frames"]) == ("dinov2-vitl14", False, 32)
    assert opt["time_embedding"] == "sinusoidal_subject"
    # optimisation
    assert (cfg.loss, cfg.beta, cfg.lr, cfg.readout_lr_mult) == ("smooth_l1", 0.01, 3e-4, 1.0)
    assert (cfg.vertices_per_step, cfg.patience, cfg.limit_train_batches) == (25600, 120, 0.05)
    assert cfg.top_k == 10 and cfg.soup_top_k == 10 and cfg.schedule == "constant"
    # the seed's vertex reweighting and (with a teacher) its loss-mixing distillation over 100 epochs
    assert (cfg.vertex_weighting, cfg.vertex_weight_decay, cfg.vertex_weight_start_epoch) == ("val_ema_minmax", 0.9, 20)
    assert not cfg.teacher_path and (cfg.distill_mix, cfg.handover_epochs, cfg.handover_steps) == ("losses", 100, 0)


def test_mem_preset_schedule_is_warmup_then_constant():
    """The LightningModule's real scheduler: linear warmup, then the base lr for good."""
    import pytorch_lightning as pl

    from brainnet.training.module import EncoderModule

    cfg = TrainConfig.preset(PRESET, warmup_steps=10, warmup_epochs=0)
    model = torch.nn.Linear(2, 2)
    model.regularizer_weight = lambda step: 0.0  # noqa: ARG005 - the module only checks it exists
    module = EncoderModule.__new__(EncoderModule)  # the optimiser part only: no encoding model needed
    pl.LightningModule.__init__(module)
    module.model, module.config = model, cfg
    module._trainer = SimpleNamespace(estimated_stepping_batches=200)
    sched_cfg = module.configure_optimizers()
    opt, sched = sched_cfg["optimizer"], sched_cfg["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(200):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lrs = np.array(lrs) / cfg.lr
    np.testing.assert_allclose(lrs[:10], np.arange(1, 11) / 10)
    np.testing.assert_allclose(lrs[10:], 1.0)


def test_mem_preset_model_shapes():
    """Conv heads: two residual 5x5 convs at the backbone width, then a 5x5 conv to 192; global MLPs
    read mean + max pooled maps (2 C) for the non-last layers; one selector pair per subject."""
    from brainnet.models import MemConfig, MemModel

    c = 24
    opt = {**TrainConfig.preset(PRESET).model_options, "in_channels": (c,) * 4, "memory_dim": 16, "width": 12}
    cfg = MemConfig(**opt)
    rng = np.random.default_rng(0)
    coords = {s: rng.normal(size=(30, 3)) * 100 for s in ("subj01", "subj02")}
    hemi = {s: np.r_[np.zeros(15), np.ones(15)].astype(int) for s in coords}
    model = MemModel(cfg, coords, hemi)
    head = model.conv_heads[0]
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.bias is None) for m in convs] == \
        [(c, c, (5, 5), True)] * 2 + [(c, 12, (5, 5), True)]
    assert [m[0].in_features for m in model.global_proj] == [2 * c, 2 * c, 2 * c, c]
    assert set(model.retina) == set(coords) and set(model.layer_selector) == set(coords)
    last = model.retina["subj01"].mlp.net[-1]
    assert last.bias is not None and last.weight.abs().sum() > 0  # random init, with biases
    assert model.layer_weights("subj01").std(0).sum() > 0  # not uniform at init
    batch = {"local": [torch.randn(2, c, 16, 16) for _ in range(4)], "global": [torch.randn(2, c)] * 4,
             "memory": torch.randn(2, 32, 16), "memory_valid": torch.ones(2, 32, dtype=torch.bool),
             "behaviour": torch.randn(2, 35), "subject": "subj02"}
    assert model(batch).shape == (2, 30)


def test_gated_adaln_starts_as_identity_and_gates_the_branches():
    from brainnet.backbones import create_backbone
    from brainnet.backbones.adapters import AdaLNZero
    from brainnet.training.presets import VIT_BLOCK_GATES, VIT_BLOCK_NORMS

    bb = create_backbone("timm:vit_small_patch14_dinov2-random", image_size=28, depth=2)
    x, cond = torch.rand(2, 3, 28, 28), torch.randn(2, 35)
    base = bb.get_tokens(x)[0]
    adaln = AdaLNZero(bb, 35, VIT_BLOCK_NORMS, VIT_BLOCK_GATES, bound=0.5)
    assert len(adaln.names) == 4 and len(adaln.gate_names) == 4
    with adaln.condition(cond):
        same = bb.get_tokens(x)[0]
    for k in base:
        torch.testing.assert_close(same[k], base[k])
    gate = adaln.modulators["gate__" + adaln.gate_names[0].replace(".", "__")]
    seen = []
    bb.model.blocks[0].ls1.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    with torch.no_grad():
        gate.bias.fill_(100.0)  # tanh saturates: the gate is 1 + 0.5
        with adaln.condition(cond):
            bb.get_tokens(x)
    inp, out = seen[-1]
    torch.testing.assert_close(out, bb.model.blocks[0].ls1.gamma * inp * 1.5)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return prepared_tiny(tmp_path_factory)


def test_mem_preset_trains_a_few_steps(root, tmp_path):
    """The preset with a random DINOv2 ViT (same block layout; the S/14 for CPU time: the B/14 took
    79 s here) at 28 px (2 x 2 patches) trains and scores. The backbone runs in the loop, so the cached
    tokens are only shapes; the memory vectors stand in for the DINOv2-L cache (random, 1024 wide).
    The T-1 image runs through a random DINOv2-S/14 with its own adapters; the checkpoint reloads.
    No soup here (one checkpoint; the soup has its own tests): it took 10 s."""
    from brainnet.data.prepared import PreparedDataset
    from brainnet.training.batches import EncodingDataset, FeatureSet, SubjectTrials, pixels_for
    from brainnet.training.evaluate import predict_dataset
    from brainnet.training.fit import epoch_batches, fit_encoder
    from brainnet.training.run_setup import load_model

    n = len(PreparedDataset(root).images)
    zeros = {str(i): np.zeros((n, 384, 1, 1), np.float16) for i in (2, 5, 8, 11)}
    feats = FeatureSet(zeros, {k: v[:, :, 0, 0] for k, v in zeros.items()},
                       torch.randn(n, 1024, generator=torch.Generator().manual_seed(0)))
    cfg = TrainConfig.preset(PRESET, data_dir=str(root), out_dir=str(tmp_path / "run"), subjects=("subj01",),
                             backbone="timm:vit_small_patch14_dinov2-random", image_size=28,
                             t1_backbone="timm:vit_small_patch14_dinov2-random",
                             model_options={"grid_size": 2, "chunk_size": None}, batch_size=4,
                             max_steps=2, limit_train_batches=1.0, eval_split="val", soup_top_k=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_encoder(cfg, features=feats)
    assert result.global_step == 2
    n_train = int((SubjectTrials.load(root, "subj01").split == 0).sum())
    assert result.config.warmup_steps == 20 * epoch_batches(cfg, n_train) == 20 * (n_train // 4)
    counts = result.model.n_trainable()
    assert counts["lora"] > 0 and counts["adaln"] > 0 and counts["t1"] == counts["lora"] + counts["adaln"]
    assert result.model.t1_layer == "11" and result.model.model.config.t1_input_dim == 384
    assert np.isfinite(result.summary["eval_mean_r"])
    # the checkpoint holds the T-1 adapters (not its frozen weights) and load_model rebuilds the model
    ckpt = torch.load(result.best_checkpoint, map_location="cpu", weights_only=False)
    t1_keys = [k for k in ckpt["state_dict"] if k.startswith("model.t1_")]
    assert any(".lora_b" in k for k in t1_keys) and any(k.startswith("model.t1_adaln.") for k in t1_keys)
    assert all(".lora_" in k for k in t1_keys if k.startswith("model.t1_backbone."))
    assert ckpt["t1_fingerprint"] == result.model.t1_fingerprint
    loaded = load_model(result.best_checkpoint)
    st = SubjectTrials.load(root, "subj01")
    some = np.isin(np.arange(st.split.size), np.flatnonzero(st.split == 1)[:12])
    ds = EncodingDataset(root, ["subj01"], "val", feats, 32, trial_filter={"subj01": some},
                         images=pixels_for(loaded, root))
    assert "t1_pixels" in ds.__getitems__([0])
    a, b = predict_dataset(result.model, ds)["subj01"], predict_dataset(loaded, ds)["subj01"]
    np.testing.assert_allclose(a.pred, b.pred, atol=1e-5)
