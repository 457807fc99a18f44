"""Named training recipes for :meth:`brainnet.training.TrainConfig.preset`.

A preset is a function returning TrainConfig field values (a dict); ``TrainConfig.preset(name,
**changes)`` builds the config with ``changes`` on top. Each recipe's settings, the source they
come from and where brainnet differs are listed in ``docs/preset-<name>.md``.

>>> TrainConfig.preset("mem-algonauts2023", data_dir=prepared, max_steps=100)
"""

from __future__ import annotations

import math
from collections.abc import Callable

#: Memory Encoding Model (Algonauts 2023): layers 2, 5, 8, 11 of DINOv2-B/14 (12 blocks).
MEM_LAYERS: tuple[int, ...] = (2, 5, 8, 11)
#: The previous image (T-1) goes through DINOv2-S/14; its layer 11 (the last) CLS token feeds the T-1 MLP.
MEM_T1_LAYER: int = 11
#: LoRA targets of a DINOv2 / timm ViT block: attention qkv and output projection, MLP fc1 / fc2.
VIT_BLOCK_LORA_TARGETS: tuple[str, ...] = ("*blocks.*.attn.qkv", "*blocks.*.attn.proj", "*blocks.*.mlp.fc1",
                                           "*blocks.*.mlp.fc2")
#: AdaLN of a ViT block: its two pre-norms, and the gates on its two residual branches (LayerScale).
VIT_BLOCK_NORMS: tuple[str, ...] = ("*blocks.*.norm1", "*blocks.*.norm2")
VIT_BLOCK_GATES: tuple[str, ...] = ("*blocks.*.ls1", "*blocks.*.ls2")


def _mem_algonauts2023() -> dict:
    """The Memory Encoding Model's ``xvba`` recipe (docs/preset-mem-algonauts2023.md)."""
    rank, scale = 4, 0.2
    # vertex encoding as the reference's coordinate MLPs: 32 angular frequencies omega_k =
    # 100 ** (-k / 32), k = 0..31, i.e. periods 2 pi / omega from 2 pi to 2 pi * 100 ** (31 / 32) steps
    min_period = 2 * math.pi
    max_period = 2 * math.pi * 100 ** (31 / 32)
    model_options = dict(
        grid_size=16, width=192, conv_head="input_width", conv_kernel=5, conv_blocks=2,
        global_head="mlp", global_pool="maxavg_nonlast",
        per_subject_selectors=True, selector_bias=True, selector_init="random", jitter=0.01,
        mlp_hidden=128, mlp_layers=2, n_freqs=32, span=100.0, pe_min_period=min_period, pe_max_period=max_period,
        pe_gap=0.5, readout_init="linear", reg_weight=3e-5 * math.log(4), reg_decay_steps=0,
        n_memory_frames=32, separate_t1=True, time_embedding="sinusoidal_subject", time_dim=64, frame_dim=64,
        memory_hidden=256, memory_out=64, t1_dim=64, behaviour_out=32, dropout=0.2,
    )
    return dict(
        subjects=tuple(f"subj{i:02d}" for i in range(1, 9)),
        backbone="dinov2-vitb14", layers=MEM_LAYERS, pool=16, image_size=224,
        memory_backbone="dinov2-vitl14", memory_layer=None, standardize_memory=False,
        model="mem", ablation="full", model_options=model_options,
        lora_rank=rank, lora_alpha=rank * scale, lora_targets=VIT_BLOCK_LORA_TARGETS,
        adaln_zero=True, adaln_targets=VIT_BLOCK_NORMS, adaln_gates=VIT_BLOCK_GATES, adaln_bound=0.5,
        t1_backbone="dinov2-vits14", t1_layer=MEM_T1_LAYER,
        loss="smooth_l1", beta=0.01, lr=3e-4, readout_lr_mult=1.0, weight_decay=3e-4,
        warmup_epochs=20.0, schedule="constant", grad_clip=0.5,
        vertex_weighting="val_ema_minmax", vertex_weight_decay=0.9, vertex_weight_start_epoch=20,
        batch_size=32, vertices_per_step=25600, max_epochs=500, limit_train_batches=0.05,
        patience=120, top_k=10, soup_top_k=10,
        # distillation off (teacher_path=""); with a teacher: the seed's loss mix over 100 epochs
        teacher_path="", distill_mix="losses", handover_epochs=100, handover_steps=0,
    )


#: name -> function returning the preset's TrainConfig field values.
PRESETS: dict[str, Callable[[], dict]] = {
    "mem-algonauts2023": _mem_algonauts2023,
}


def preset_fields(name: str) -> dict:
    """TrainConfig field values of preset ``name`` (a fresh dict); unknown names raise ``ValueError``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
    return PRESETS[name]()
