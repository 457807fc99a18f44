"""Small Lightning callbacks of :func:`brainnet.training.fit.fit_encoder`."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from brainnet.models import BackboneInLoop


class StepRecorder(pl.Callback):
    """Remembers the global step at which training (re)started."""

    start_step: int | None = None

    def on_train_start(self, trainer, pl_module):
        self.start_step = int(trainer.global_step)


class ValidateAtMaxSteps(pl.Callback):
    """Stops (and so validates and checkpoints) at ``max_steps`` when it falls inside an epoch.

    Lightning validates at epoch ends; a run whose ``max_steps`` ends mid-epoch would otherwise end
    with its last weights never validated (and with ``max_steps`` below one epoch, no val r at all).
    Setting ``trainer.should_stop`` makes the epoch loop validate after this batch."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


class ModelConfigSaver(pl.Callback):
    """Writes the model's kind and config (and an in-loop backbone's adapters and fingerprints)
    into every checkpoint, so :func:`~brainnet.training.run_setup.load_model` can rebuild it."""

    def __init__(self, kind: str, cfg, model: torch.nn.Module):
        self.kind, self.cfg, self.model = kind, cfg, model

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint["model_config"] = self.cfg.to_dict()
        checkpoint["model_kind"] = self.kind
        if isinstance(self.model, BackboneInLoop):
            checkpoint["adapt_config"] = self.model.adapt_config.to_dict()
            checkpoint["backbone_fingerprint"] = self.model.base_fingerprint
            if self.model.t1_fingerprint is not None:
                checkpoint["t1_fingerprint"] = self.model.t1_fingerprint
