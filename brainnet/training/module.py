"""LightningModule wrapping an encoding model: loss, optimiser, schedule, validation r.

No maths of its own: the model computes predictions, :mod:`.optim` the loss, parameter groups,
schedule and distillation targets, :mod:`.metrics` the correlations.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch

from brainnet.models import EncodingModel, check_encoding_model

from .config import TrainConfig
from .metrics import PearsonAccumulator
from .optim import distillation_loss, encoding_loss, lr_multiplier, param_groups, teacher_share
from .pearson_sync import reduce_accumulators
from .vertex_weights import VertexWeightState, normalizes_by_weight_sum, update_states


class EncoderModule(pl.LightningModule):
    """Train an :class:`~brainnet.models.EncodingModel` ``model(batch, vertex_idx) -> (B, N)`` on batches
    from :class:`brainnet.training.batches.EncodingDataset`; the loss adds
    ``model.regularizer_weight(step) * model.regularizer(subject, vertex_idx)`` when that weight is > 0.

    Logged: ``train_loss`` (per step), ``val_r`` (mean over vertices and subjects of the per-vertex
    Pearson r on the validation split; early stopping and checkpoints follow it). With several
    processes each validates its share of the trials and the per-vertex statistics are gathered
    and merged (:func:`.pearson_sync.reduce_accumulators`) before r is computed, so every process
    logs the same ``val_r``, equal to a one-process validation of the same weights.
    """

    def __init__(self, model: EncodingModel, config: TrainConfig):
        super().__init__()
        check_encoding_model(model)
        self.model = model
        self.config = config
        self._val: dict[str, PearsonAccumulator] = {}
        self._train_losses: list[float] = []
        self.history: list[dict] = []
        self.vertex_state: dict[str, VertexWeightState] = {}  # per subject (vertex_weighting != "none")

    def forward(self, batch, vertex_idx=None):
        return self.model(batch, vertex_idx)

    def _vertex_subset(self, n_vertices: int, device) -> torch.Tensor | None:
        k = self.config.vertices_per_step
        if k is None or k >= n_vertices:
            return None
        return torch.randperm(n_vertices, device=device)[:k]

    def training_step(self, batch, batch_idx):
        c = self.config
        target, teacher = batch["fmri"], batch.get("teacher")
        idx = self._vertex_subset(target.shape[1], target.device)
        pred = self.model(batch, idx)
        if idx is not None:
            target = target[:, idx]
            teacher = None if teacher is None else teacher[:, idx]
        weights = self._loss_weights(batch["subject"], idx, target.device)
        by_sum = normalizes_by_weight_sum(c.vertex_weighting)
        if teacher is None:
            loss = encoding_loss(pred, target, c.loss, c.beta, weights, by_sum)
        else:
            a = teacher_share(int(self.global_step), int(self.current_epoch), c.handover_steps, c.handover_epochs)
            loss = distillation_loss(pred, target, teacher, a, c.distill_mix, c.loss, c.beta, weights, by_sum)
        reg_w = self.model.regularizer_weight(int(self.global_step))
        if reg_w > 0:
            loss = loss + reg_w * self.model.regularizer(batch["subject"], idx)
        self.log("train_loss", loss.detach(), prog_bar=True, batch_size=target.shape[0])
        self._train_losses.append(float(loss.detach()))
        return loss

    def _loss_weights(self, subject: str, idx: torch.Tensor | None, device) -> torch.Tensor | None:
        """Per-vertex loss weights of this step's vertices (None: uniform); set at validation ends."""
        state = self.vertex_state.get(subject)
        if self.config.vertex_weighting == "none" or state is None or state.weights is None:
            return None
        w = state.weights.to(device)
        return w if idx is None else w[idx]

    def on_validation_epoch_start(self):
        self._val = {}

    def validation_step(self, batch, batch_idx):
        pred = self.model(batch)
        acc = self._val.setdefault(batch["subject"], PearsonAccumulator())
        acc.update(pred.float(), batch["fmri"].float())

    def on_validation_epoch_end(self):
        gather = self.all_gather if self.trainer.world_size > 1 else None
        merged = reduce_accumulators(self._val, self.config.subjects, gather, self.device)
        if not merged:
            return
        per_vertex = {s: acc.compute() for s, acc in merged.items() if acc.n >= 2}
        rs = [float(r.mean()) for r in per_vertex.values()]
        c = self.config
        if c.vertex_weighting != "none" and not self.trainer.sanity_checking:
            # r is already merged over processes, so every process computes the same weights
            self.vertex_state = update_states(c.vertex_weighting, self.vertex_state, per_vertex, c.vertex_weight_decay,
                                              int(self.current_epoch), c.vertex_weight_mix, c.vertex_weight_start_epoch)
        val_r = float(np.mean(rs)) if rs else 0.0
        # already reduced: the same value on every process (sync_dist would only average equal numbers)
        self.log("val_r", val_r, prog_bar=True, sync_dist=False)
        if not self.trainer.sanity_checking:
            loss = float(np.mean(self._train_losses)) if self._train_losses else float("nan")
            self.history.append({"epoch": int(self.current_epoch), "step": int(self.global_step),
                                 "train_loss": loss, "val_r": val_r})
            self._train_losses = []

    def configure_optimizers(self):
        c = self.config
        groups = param_groups(self.model, c.lr, c.weight_decay, c.lr * c.readout_lr_mult)
        opt = torch.optim.AdamW(groups, lr=c.lr)
        total = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_multiplier(step, total, c.warmup_steps, c.min_lr_ratio, c.schedule))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint):
        checkpoint["train_config"] = self.config.to_dict()
        checkpoint["history"] = list(self.history)
        checkpoint["vertex_weight_state"] = {s: st.to_dict() for s, st in self.vertex_state.items()}

    def on_load_checkpoint(self, checkpoint):
        self.history = list(checkpoint.get("history", []))
        self.vertex_state = {s: VertexWeightState.from_dict(d)
                             for s, d in checkpoint.get("vertex_weight_state", {}).items()}
