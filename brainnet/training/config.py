"""TrainConfig: every setting of one training run (saved as ``config.json`` with the run)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainnet.data.layout import SPLITS, subject_name
from brainnet.models.configs import DictConfig
from brainnet.models.registry import list_models

from .optim import DISTILL_MIXES, SCHEDULES
from .vertex_weights import WEIGHTINGS


@dataclass(frozen=True)
class TrainConfig(DictConfig):
    """Settings of :func:`brainnet.training.fit.fit_encoder`.

    Data
        data_dir: prepared dataset directory. subjects: subjects trained together (one readout
        each). backbone: registered backbone name; layers: its layers to cache (None = all);
        pool: local maps pooled to pool x pool; memory_layer: cached layer whose global token is
        the memory-image vector (None = last); memory_backbone: another backbone whose global
        token is the memory vector ("" = the current-image cache), standardize_memory: z-score the
        memory vectors (False: raw); image_size: input side of the backbones (None = their
        default). eval_split: split scored at the end ("test", "val",
        "predict", or "heldout" = predict-split trials whose image is in no other split, i.e. the
        Algonauts test images).
    Model
        model: "mem" (:class:`MemModel`) or "factortopy"; ablation: a row of
        ``brainnet.models.ABLATIONS`` (mem only); model_options: overrides of the model config
        fields (MemConfig / FactorTopyConfig), e.g. ``{"width": 32}``.
    Backbone adaptation (off by default; see :class:`brainnet.models.BackboneInLoop`)
        lora_rank: rank of LoRA updates inside the backbone (0 = off); lora_alpha: their scale
        numerator (None = rank); lora_targets: fnmatch patterns of the adapted layers (() =
        attention projections, or every layer of a CNN); adaln_zero: behaviour-conditioned
        AdaLN-zero on the backbone's norm layers (adaln_targets: their fnmatch patterns, () = all;
        adaln_gates: residual-branch layers gated by 1 + gate, () = none; adaln_bound: None or
        modulations squashed to bound * tanh). With any of these on, the backbone runs on
        every batch (its base weights stay frozen) instead of being read from the token cache.
        t1_backbone: "" or a second backbone, with its own adapters of the same settings, run on the
        previous trial's image; its global token of layer t1_layer (None = last) replaces the
        memory vector as the input of the model's T-1 path (mem only; needs an adapted backbone).
    Optimisation
        loss: "smooth_l1" | "mse"; beta: smooth-L1 transition; lr / readout_lr_mult: AdamW learning
        rate of the body / factor for the readouts; weight_decay (not on biases / norms);
        warmup_steps, min_lr_ratio, schedule: linear warmup over warmup_steps, then "cosine" down
        to min_lr_ratio at the last step or "constant" (:func:`.optim.lr_multiplier`);
        warmup_epochs: > 0 sets warmup_steps to that many (limited) epochs of the
        training data at the start of fit_encoder; vertex_weighting: "none", "val_ema"
        (per-vertex loss weights from the EMA, factor vertex_weight_decay, of each vertex's
        validation-r improvement, mixed with uniform weights by vertex_weight_mix) or
        "val_ema_minmax" (the EMA min-max scaled to [0, 1] over all subjects' vertices, from the
        validation at epoch vertex_weight_start_epoch on; see :mod:`.vertex_weights`); grad_clip: Trainer gradient clip
        (None: off); batch_size; vertices_per_step: random vertex subset per step (None: all);
        max_epochs / max_steps (-1: no step limit); limit_train_batches: fraction of the training
        batches that makes one epoch (validation, early stopping and checkpoints run per epoch);
        patience: early stopping on val mean r, in epochs (None: off); top_k: checkpoints kept;
        soup_top_k: greedy soup (:mod:`.soup`) over the best ``soup_top_k`` checkpoints by validation r,
        scored on the val split, then evaluated instead of the best checkpoint (0 = off; <= top_k);
        precision: "auto" = bf16/16-mixed on CUDA, 32 on CPU.
    Distillation
        teacher_path: .npz of teacher predictions per subject (n_trials, V) ("" = off); the
        teacher's weight falls linearly from 1 to 0 over handover_epochs epochs (when > 0) or
        handover_steps steps; distill_mix: "targets" (train on the blended target) or "losses"
        (blend the losses against truth and teacher); see :func:`.optim.distillation_loss`.
    Run
        out_dir: run folder (checkpoints, config.json, history.jsonl, metrics.json); seed;
        accelerator / devices / strategy: passed to the Trainer; resume: continue from
        ``out_dir/checkpoints/last.ckpt`` when it exists; progress_bar.
    """

    data_dir: str = ""
    subjects: tuple[str, ...] = ("subj01",)
    backbone: str = "brainnet-tiny"
    layers: tuple[int, ...] | None = None
    pool: int | None = 8
    memory_layer: str | None = None
    memory_backbone: str = ""
    standardize_memory: bool = True
    image_size: int | None = None
    eval_split: str = "test"
    model: str = "mem"
    ablation: str = "full"
    model_options: dict = field(default_factory=dict)
    lora_rank: int = 0
    lora_alpha: float | None = None
    lora_targets: tuple[str, ...] = ()
    adaln_zero: bool = False
    adaln_targets: tuple[str, ...] = ()
    adaln_gates: tuple[str, ...] = ()
    adaln_bound: float | None = None
    t1_backbone: str = ""
    t1_layer: int | None = None
    loss: str = "smooth_l1"
    beta: float = 0.01
    lr: float = 1e-3
    readout_lr_mult: float = 3.0
    weight_decay: float = 3e-4
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    warmup_epochs: float = 0.0
    schedule: str = "cosine"
    grad_clip: float | None = 0.5
    vertex_weighting: str = "none"
    vertex_weight_decay: float = 0.7
    vertex_weight_mix: float = 0.5
    vertex_weight_start_epoch: int = 0
    batch_size: int = 32
    vertices_per_step: int | None = None
    max_epochs: int = 20
    max_steps: int = -1
    limit_train_batches: float = 1.0
    patience: int | None = 10
    top_k: int = 3
    soup_top_k: int = 0
    precision: str = "auto"
    teacher_path: str = ""
    handover_steps: int = 0
    handover_epochs: int = 0
    distill_mix: str = "targets"
    out_dir: str = ""
    seed: int = 0
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    resume: bool = True
    progress_bar: bool = False

    def __post_init__(self):
        if self.model not in list_models(configurable=True):
            raise ValueError(f"model must be one of {list_models(configurable=True)}, got {self.model!r}")
        if self.eval_split not in SPLITS:
            raise ValueError(f"eval_split must be one of {SPLITS}, got {self.eval_split!r}")
        if self.loss not in ("smooth_l1", "mse"):
            raise ValueError(f"loss must be 'smooth_l1' or 'mse', got {self.loss!r}")
        if self.batch_size < 1 or self.top_k < 1 or self.max_epochs < 1:
            raise ValueError("batch_size, top_k and max_epochs must be >= 1")
        if not 0 <= self.soup_top_k <= self.top_k:
            raise ValueError(f"soup_top_k must be in [0, top_k={self.top_k}] (checkpoints kept), got {self.soup_top_k}")
        if self.lr <= 0 or self.readout_lr_mult <= 0 or self.weight_decay < 0:
            raise ValueError("lr and readout_lr_mult must be > 0, weight_decay >= 0")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.vertices_per_step is not None and self.vertices_per_step < 1:
            raise ValueError(f"vertices_per_step must be >= 1 or None, got {self.vertices_per_step}")
        if self.vertex_weighting not in WEIGHTINGS:
            raise ValueError(f"vertex_weighting must be one of {WEIGHTINGS}, got {self.vertex_weighting!r}")
        if self.vertex_weight_start_epoch < 0:
            raise ValueError(f"vertex_weight_start_epoch must be >= 0, got {self.vertex_weight_start_epoch}")
        if self.distill_mix not in DISTILL_MIXES:
            raise ValueError(f"distill_mix must be one of {DISTILL_MIXES}, got {self.distill_mix!r}")
        if self.handover_steps < 0 or self.handover_epochs < 0 or (self.handover_steps and self.handover_epochs):
            raise ValueError("handover_steps and handover_epochs must be >= 0 and at most one of them > 0 "
                             f"(got {self.handover_steps} and {self.handover_epochs}; set the other to 0)")
        if not 0.0 <= self.vertex_weight_decay < 1.0 or not 0.0 <= self.vertex_weight_mix <= 1.0:
            raise ValueError("vertex_weight_decay must be in [0, 1) and vertex_weight_mix in [0, 1]")
        if not self.subjects:
            raise ValueError("subjects must name at least one subject")
        if isinstance(self.subjects, str):
            raise ValueError("subjects must be a sequence of names, e.g. ('subj01',)")
        if self.lora_rank < 0 or (self.lora_alpha is not None and self.lora_alpha <= 0):
            raise ValueError("lora_rank must be >= 0 and lora_alpha > 0 (or None)")
        if isinstance(self.lora_targets, str):
            raise ValueError("lora_targets must be a sequence of patterns, e.g. ('*qkv',)")
        if not 0.0 < self.limit_train_batches <= 1.0 or self.warmup_epochs < 0:
            raise ValueError("limit_train_batches must be in (0, 1], warmup_epochs >= 0")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be >= 1 or None, got {self.image_size}")
        if self.adaln_bound is not None and self.adaln_bound <= 0:
            raise ValueError(f"adaln_bound must be > 0 or None, got {self.adaln_bound}")
        if self.t1_backbone and not self.adapts_backbone:
            raise ValueError("t1_backbone runs in the training loop: it needs lora_rank > 0 or adaln_zero=True")
        if not isinstance(self.model_options, dict):
            raise ValueError(f"model_options must be a dict, got {type(self.model_options).__name__}")

    @property
    def adapts_backbone(self) -> bool:
        """True when LoRA or AdaLN-zero is on (the backbone runs in the training loop)."""
        return self.lora_rank > 0 or self.adaln_zero

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **changes) -> TrainConfig:
        """The named recipe (see :data:`brainnet.training.presets.PRESETS`), ``changes`` overriding
        its fields; ``model_options`` in ``changes`` update the preset's model options key by key."""
        from .presets import preset_fields

        fields = preset_fields(name)
        options = {**fields.get("model_options", {}), **changes.pop("model_options", {})}
        return cls(**{**fields, **changes, "model_options": options})

    @classmethod
    def upgrade_dict(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Accept a Ray Tune config's loose spellings: one subject as a str / int, numbers for names."""
        subjects = data.get("subjects")
        if isinstance(subjects, (str, int)):
            subjects = (subjects,)
        if subjects is not None:
            data["subjects"] = tuple(subject_name(s) for s in subjects)
        return data

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
