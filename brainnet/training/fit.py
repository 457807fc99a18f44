"""``fit_encoder``: train one encoding model on a prepared dataset and score it.

>>> result = fit_encoder(TrainConfig(data_dir=prepared, out_dir="runs/mem", max_epochs=10))
>>> result.summary["eval_mean_score"], result.best_checkpoint

The run folder holds ``config.json`` (the TrainConfig), ``checkpoints/`` (top-k by validation r,
``last.ckpt``, and ``soup.ckpt`` with ``soup_top_k > 0``), ``history.json`` (per-validation train
loss / val r) and ``metrics.json``. Rerunning with the same ``out_dir`` and ``resume=True`` continues
from ``last.ckpt``. Validation runs at every epoch end and at ``max_steps``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from brainnet.data.io import save_json, save_text
from brainnet.data.layout import split_mask
from brainnet.data.prepared import PreparedDataset
from brainnet.models import BackboneInLoop, model_entry

from .batches import EncodingDataset, FeatureSet, ImagePixels, SubjectTrials, make_loader
from .callbacks import ModelConfigSaver, StepRecorder, ValidateAtMaxSteps
from .config import TrainConfig
from .evaluate import EvalResult, SubjectMeta, evaluate_predictions, predict_dataset
from .module import EncoderModule
from .resume_state import AtomicCheckpointIO, RngStateCallback, run_lock
from .run_setup import (
    adapt_config,
    build_model,
    check_inputs,
    config_features,
    in_loop_backbone,
    model_config,
    model_state,
    t1_in_loop_backbone,
)
from .soup import soup_checkpoints, soup_members_checkpoints


class EncodingData(pl.LightningDataModule):
    """Train / val loaders; the train sampler is sharded by the Trainer's rank for DDP."""

    def __init__(self, train: EncodingDataset, val: EncodingDataset, batch_size: int, seed: int, gpu: bool = False):
        super().__init__()
        self.train, self.val, self.batch_size, self.seed = train, val, batch_size, seed
        # for a GPU: batches assembled by worker processes, in pinned memory (the CPU run keeps its cores)
        self.loader = dict(num_workers=min(4, (os.cpu_count() or 1) // 2), pin_memory=True) if gpu else {}

    def _shard(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def train_dataloader(self):
        rank, world = self._shard()
        return make_loader(self.train, self.batch_size, shuffle=True, drop_last=len(self.train) > self.batch_size,
                           seed=self.seed, rank=rank, world_size=world, **self.loader)

    def val_dataloader(self):
        # each rank scores its own batches, none padded or repeated (even=False); the module merges the
        # ranks' per-vertex sums. Batches are made smaller when needed so that every rank gets one
        # (a rank without validation batches would skip the gather the others wait in).
        rank, world = self._shard()
        size = max(self.batch_size, 64)
        while size > 1 and len(make_loader(self.val, size)) < world:
            size //= 2
        return make_loader(self.val, size, shuffle=False, rank=rank, world_size=world, even=False, **self.loader)


@dataclass
class FitResult:
    """What :func:`fit_encoder` returns.

    Attributes
    ----------
    config : the TrainConfig; out_dir : run folder
    model : the model with the best validation weights (eval mode)
    best_checkpoint : path; checkpoints : DataFrame (path, val_r) of the kept top-k
    start_step / global_step : step training started from (> 0 after a resume) / ended at
    history : DataFrame per validation (epoch, step, train_loss, val_r)
    evaluation : subject -> EvalResult on ``config.eval_split``
    summary : flat numbers (best_val_r, eval_mean_r, eval_mean_score (trial-level), eval_challenge_score
        (Algonauts challenge score), ...) and ``backbone_weights`` (the ``weights_id`` of the backbone
        that made the tokens); also metrics.json
    soup : with ``config.soup_top_k > 0``, the record of :func:`.soup.soup_checkpoints` (of
        :func:`.soup.soup_members_checkpoints` for a MemEnsemble of several members: each member souped by its
        own validation r from all kept checkpoints) (``model`` and ``evaluation`` are then the soup's;
        ``checkpoints/soup.ckpt`` holds its weights)
    """

    config: TrainConfig
    out_dir: Path
    model: torch.nn.Module
    best_checkpoint: str
    checkpoints: pd.DataFrame
    start_step: int
    global_step: int
    history: pd.DataFrame
    evaluation: dict[str, EvalResult] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    soup: dict = field(default_factory=dict)


#: Settings that may change when a run is resumed (more epochs, other devices, another scored split).
RESUMABLE_FIELDS = ("max_epochs", "max_steps", "patience", "progress_bar", "devices", "accelerator", "strategy",
                    "resume", "out_dir", "eval_split", "top_k", "soup_top_k")


def run_key(config: TrainConfig) -> str:
    """12 hex digits identifying what a run trains (all settings except :data:`RESUMABLE_FIELDS`):
    equal keys can share a run folder and resume each other."""
    d = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_FIELDS}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _check_resumable(out: Path, config: TrainConfig) -> None:
    """Refuse to resume a run folder whose saved config trains something else (before anything is written)."""
    saved, last = out / "config.json", out / "checkpoints" / "last.ckpt"
    if not (config.resume and saved.is_file() and last.is_file()):
        return
    old = TrainConfig.load(saved).to_dict()
    new = config.to_dict()
    resolved = {"warmup_steps"} if new.get("warmup_epochs") else set()  # set from warmup_epochs by fit_encoder
    diff = sorted(k for k in new if k not in RESUMABLE_FIELDS and k not in resolved and old.get(k) != new[k])
    if diff:
        raise ValueError(f"{out} holds a run with other settings ({', '.join(diff)}); it cannot be resumed with "
                         "this config. Use another out_dir (e.g. one named with "
                         "brainnet.training.fit.run_key(config)), delete that folder, or set resume=False to train "
                         "over it.")


def default_out_dir(config: TrainConfig) -> Path:
    """``<data home>/outputs/runs/<model>-<ablation>-<run_key>`` (same settings -> same folder -> resumable)."""
    from brainnet.paths import data_home

    return data_home(None) / "outputs" / "runs" / f"{config.model}-{config.ablation}-{run_key(config)}"


def _strategy(config: TrainConfig) -> str:
    """The Trainer strategy: ``"ddp"`` with several subjects becomes ``"ddp_find_unused_parameters_true"``
    (a batch holds one subject, so the other subjects' readouts get no gradient on that process)."""
    if config.strategy == "ddp" and len(config.subjects) > 1:
        return "ddp_find_unused_parameters_true"
    return config.strategy


def _uses_cuda(accelerator: str) -> bool:
    return torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")


def _precision(config: TrainConfig, accelerator: str) -> str:
    if config.precision != "auto":
        return config.precision
    if _uses_cuda(accelerator):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def eval_dataset(config: TrainConfig, features: FeatureSet, split: str,
                 trials: dict[str, SubjectTrials] | None = None, images: ImagePixels | None = None) -> EncodingDataset:
    """Dataset of a split name or ``"heldout"`` (see :func:`brainnet.data.layout.split_mask`); ``images`` for a
    model with its backbone in the loop (see :func:`.batches.pixels_for`)."""
    data = PreparedDataset.open(config.data_dir)
    trials = trials or {s: SubjectTrials.load(data, s) for s in config.subjects}
    if split == "heldout":
        filt = {s: split_mask(t.split, t.image, "heldout") for s, t in trials.items()}
        return EncodingDataset(data, config.subjects, "predict", features, _frames(config),
                               trial_filter=filt, subject_trials=trials, images=images)
    return EncodingDataset(data, config.subjects, split, features, _frames(config), subject_trials=trials,
                           images=images)


def _frames(config: TrainConfig) -> int:
    """Memory frames a batch carries: the model config's ``n_memory_frames`` (1 for models without it)."""
    default = model_entry(config.model).config_default("n_memory_frames")
    return 1 if default is None else int(config.model_options.get("n_memory_frames", default))


def evaluate_model(model: torch.nn.Module, dataset: EncodingDataset, batch_size: int = 64,
                   n_candidates: int = 300) -> dict[str, EvalResult]:
    """Predict a dataset and score every subject (see :func:`evaluate_predictions`)."""
    preds = predict_dataset(model, dataset, batch_size)
    return {s: evaluate_predictions(p.pred, p.target, SubjectMeta.load(dataset.prepared, s), p.image, n_candidates)
            for s, p in preds.items()}


def epoch_batches(config: TrainConfig, n_train: int) -> int:
    """Training batches in one epoch: ``limit_train_batches`` of the loader's batches (at least 1;
    one device: the loader drops the last partial batch when there is more than one batch)."""
    n = n_train // config.batch_size if n_train > config.batch_size else 1
    return max(1, int(n * config.limit_train_batches))


def _check_in_loop_features(backbone, features: FeatureSet, name: str) -> None:
    """The cached features must come from the backbone that will run in the loop (same layers and widths)."""
    widths = dict(zip(backbone.layer_names, backbone.widths))
    got = tuple(widths.get(n, -1) for n in features.layer_names)
    if got != features.in_channels:
        raise ValueError(f"the features passed were not made by backbone {name!r} "
                         f"(layers {list(features.layer_names)}, channels {list(features.in_channels)}; "
                         f"it has {widths}); build them with that backbone")


def fit_encoder(config: TrainConfig | dict, features: FeatureSet | None = None) -> FitResult:
    """Train, keep the best checkpoint, score it on ``config.eval_split``.

    One training at a time per run folder: a second one raises :class:`brainnet.errors.LockedError`
    (see :func:`.resume_state.run_lock`). A killed run resumes exactly from its last epoch end.

    Parameters
    ----------
    config : TrainConfig or its dict (e.g. a Ray Tune trial config)
    features : precomputed :class:`FeatureSet` (None: built from ``config.backbone``); pass one to
        train several models (ablations, seeds) on the same cached tokens
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    out = Path(config.out_dir) if config.out_dir else default_out_dir(config)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with run_lock(out):
            return _fit_encoder(config.replace(out_dir=str(out)), features)
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # refused before anything was written


def _fit_encoder(config: TrainConfig, features: FeatureSet | None) -> FitResult:
    if not config.data_dir:
        raise FileNotFoundError("TrainConfig.data_dir is empty: give a prepared dataset "
                                "(brainnet.data.prepare or brainnet.data.ensure_mini)")
    data = PreparedDataset(config.data_dir)  # checks every file before anything is written; opened once
    check_inputs(config, data)  # MissingInputError for an input the dataset lacks, before any work
    out = Path(config.out_dir) if config.out_dir else default_out_dir(config)
    config = config.replace(out_dir=str(out))
    _check_resumable(out, config)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    backbone = in_loop_backbone(config) if config.adapts_backbone else None
    if features is None:
        features = config_features(config, data, backbone)
    t1 = t1_in_loop_backbone(config)
    mcfg = model_config(config, features, t1)
    if not getattr(mcfg, "t1_input_dim", 0):
        t1 = None  # a variant without the T-1 path
    images = None
    if backbone is not None:
        _check_in_loop_features(backbone, features, config.backbone)
        images = ImagePixels.load(data, backbone.input_size, None if t1 is None else t1.input_size)
    trials = {s: SubjectTrials.load(data, s) for s in config.subjects}
    teacher = None
    if config.teacher_path:
        with np.load(config.teacher_path) as z:
            teacher = {s: z[s] for s in config.subjects}
    train = EncodingDataset(data, config.subjects, "train", features, _frames(config), teacher=teacher,
                            subject_trials=trials, images=images)
    val = EncodingDataset(data, config.subjects, "val", features, _frames(config), subject_trials=trials,
                          images=images)
    if len(train) == 0 or len(val) < 2:
        raise ValueError(f"need training trials and >= 2 validation trials, got {len(train)} / {len(val)}")
    train_batches = epoch_batches(config, len(train))
    if config.warmup_epochs > 0:
        config = config.replace(warmup_steps=round(config.warmup_epochs * train_batches))
    out.mkdir(parents=True, exist_ok=True)  # inputs checked: only now is anything written
    config.save(out / "config.json")
    model = build_model(config.model, mcfg, data, config.subjects)
    if backbone is not None:
        model = BackboneInLoop(backbone, model, adapt_config(config, features), t1)
    module = EncoderModule(model, config)

    ckpt_dir = out / "checkpoints"
    checkpoint = pl.callbacks.ModelCheckpoint(
        dirpath=ckpt_dir, filename="epoch{epoch:03d}-step{step:06d}-val_r{val_r:.5f}", monitor="val_r", mode="max",
        save_top_k=config.top_k, save_last=True, auto_insert_metric_name=False)
    recorder = StepRecorder()
    callbacks = [checkpoint, recorder, ModelConfigSaver(config.model, mcfg, model), ValidateAtMaxSteps(),
                 RngStateCallback()]
    if config.patience is not None:
        # checked after each validation only (a run cut by max_steps mid-epoch ends without one)
        callbacks.append(pl.callbacks.EarlyStopping(monitor="val_r", mode="max", patience=config.patience,
                                                    check_on_train_epoch_end=False))
    gpu = _uses_cuda(config.accelerator) and config.devices != 0
    trainer = pl.Trainer(
        accelerator=config.accelerator, devices=config.devices, strategy=_strategy(config),
        precision=_precision(config, config.accelerator), max_epochs=config.max_epochs, max_steps=config.max_steps,
        limit_train_batches=train_batches if config.limit_train_batches < 1.0 else 1.0,
        gradient_clip_val=config.grad_clip, callbacks=callbacks, logger=False, default_root_dir=str(out),
        enable_progress_bar=config.progress_bar, enable_model_summary=False, num_sanity_val_steps=0,
        use_distributed_sampler=False, log_every_n_steps=10, plugins=[AtomicCheckpointIO()])
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if config.resume and last.is_file() else None
    with warnings.catch_warnings():
        # a backbone in the loop stays in eval mode on purpose (frozen norms, no dropout)
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode")
        # val_r is reduced across processes by the module itself (see EncoderModule)
        warnings.filterwarnings("ignore", message=r".*self\.log\('val_r', \.\.\., sync_dist=True\)")
        trainer.fit(module, datamodule=EncodingData(train, val, config.batch_size, config.seed, gpu),
                    ckpt_path=ckpt_path, weights_only=True)

    best = checkpoint.best_model_path or (str(last) if last.is_file() else "")
    if best:
        model.load_state_dict(model_state(torch.load(best, map_location="cpu", weights_only=True)))
    model = model.to("cuda" if gpu else "cpu").eval()  # scored on the training device, returned on the CPU
    kept = pd.DataFrame([{"path": p, "val_r": float(v)} for p, v in checkpoint.best_k_models.items()])
    if len(kept):
        kept = kept.sort_values("val_r", ascending=False, ignore_index=True)
    history = pd.DataFrame(module.history)
    # no on_train_start when a resumed run has nothing left to train: it started (and ended) where it was
    start = int(recorder.start_step if recorder.start_step is not None else trainer.global_step)
    result = FitResult(config, out, model, best, kept, start, int(trainer.global_step),
                       history)
    if trainer.is_global_zero:
        if config.soup_top_k > 0 and len(kept):
            if getattr(model, "n_members", 1) > 1:  # each member of a MemEnsemble: its own top of the kept ones
                result.soup = soup_members_checkpoints(model, list(zip(kept["path"], kept["val_r"])), val,
                                                       ckpt_dir / "soup.ckpt", top=config.soup_top_k)
            else:
                top = kept.head(config.soup_top_k)
                result.soup = soup_checkpoints(model, list(zip(top["path"], top["val_r"])), val,
                                               ckpt_dir / "soup.ckpt")
        ev = eval_dataset(config, features, config.eval_split, trials, images)
        if len(ev):
            result.evaluation = evaluate_model(model, ev)
        result.summary = summarize_fit(result) | {"backbone_weights": features.weights}  # which weights made the tokens
        save_json(out / "metrics.json", result.summary)
        save_text(out / "history.json", history.to_json(orient="records", indent=1))
    result.model = model.cpu()
    return result


def summarize_fit(result: FitResult) -> dict:
    """Flat numbers of a fit: best val r, steps, and per evaluated subject mean r / score / identification
    (also averaged over subjects as ``eval_*``); with a soup, ``soup_val_r`` / ``soup_best_single_val_r``
    (validation r of the soup / of the best checkpoint alone), ``soup_members`` (file names), ``soup_size``.

    ``eval_mean_score`` is trial-level (r over single trials / NC of 3 repeats); ``eval_challenge_score``
    is the Algonauts challenge score (image-averaged, NC from the repeat counts): only the latter compares
    with challenge numbers (see :mod:`brainnet.training.metrics`). ``score_kind`` says which scores there
    are: "noise_normalized", or "pearson_r" on a dataset without a noise ceiling (then no ``*score*`` keys:
    ``eval_mean_r`` / ``eval_mean_r2`` and ``eval_challenge_mean_r`` / ``eval_challenge_r2`` are the scores)."""
    s: dict = {"best_val_r": float(result.history["val_r"].max()) if len(result.history) else float("nan"),
               "global_step": result.global_step, "start_step": result.start_step,
               "eval_split": result.config.eval_split}
    keys = ("mean_r", "median_r", "mean_r2", "median_r2", "mean_score", "median_score", "identification",
            "challenge_score", "challenge_mean_r", "challenge_r2")
    kinds = sorted({ev.summary["score_kind"] for ev in result.evaluation.values()})
    if kinds:
        s["score_kind"] = kinds[0] if len(kinds) == 1 else "mixed"
    for subj, ev in result.evaluation.items():
        for k in keys:
            if k in ev.summary:
                s[f"{subj}/{k}"] = float(ev.summary[k])
    for k in keys:
        vals = [ev.summary[k] for ev in result.evaluation.values() if k in ev.summary]
        if vals:
            s[f"eval_{k}"] = float(np.mean(vals))
    if result.soup:
        s.update(soup_val_r=result.soup["soup_val_r"], soup_best_single_val_r=result.soup["best_single_val_r"],
                 soup_members=list(result.soup["members"]), soup_size=len(result.soup["members"]))
    return s


def train_trial(config: dict) -> dict:
    """Ray Tune trainable: ``fit_encoder`` for one trial config (TrainConfig keys); returns
    :func:`summarize_fit` numbers. Without ``out_dir`` the run goes to the trial's own folder."""
    cfg = dict(config)
    if not cfg.get("out_dir"):
        try:
            from ray import tune

            cfg["out_dir"] = str(Path(tune.get_context().get_trial_dir()) / "run")
        except Exception:  # not inside a Ray trial
            cfg["out_dir"] = str(Path.cwd() / "run")
    return fit_encoder(TrainConfig.from_dict(cfg)).summary
