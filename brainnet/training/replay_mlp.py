"""Memory replay, the MLP lag model: :class:`brainnet.models.LagModel` trained through the
project's LightningModule.

:func:`fit_mlp` trains one lag model with :class:`brainnet.training.module.EncoderModule` (the
loss, AdamW parameter groups, schedule and validation r every encoding model uses) on a plain
``pytorch_lightning.Trainer`` without checkpoint files: one ``GroupKFold`` fold of the fit images
is the inner validation set, and the weights of the epoch with the best inner mean r are kept in
memory. :func:`brainnet.training.fit.fit_encoder` itself is not used: it builds its models and
batches from a prepared dataset's current-image tokens, while a lag model sees the image k slots
back, and it writes a run folder per fit (the grid has a cell per subject x lag x condition).
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, RandomSampler

from brainnet.models.replay import LagConfig, LagModel

from .config import TrainConfig
from .module import EncoderModule
from .replay_fit import ReplayConfig, ReplayFeatures, inner_folds

__all__ = ["fit_mlp"]


def _identity(batch):
    return batch


class _LagTrials:
    """Map-style dataset of trials; ``__getitems__`` builds a whole batch for
    :class:`~brainnet.training.module.EncoderModule`: ``{"vectors": [(B, d_l)], "fmri": (B, V),
    "subject": str}``."""

    def __init__(self, layers, rows: np.ndarray, y: np.ndarray, subject: str):
        self.layers, self.subject = layers, subject
        self.rows = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        self.y = torch.from_numpy(np.asarray(y, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, idx):
        r = self.rows[idx]
        return {"vectors": [b[r] for b in self.layers], "fmri": self.y[idx], "subject": self.subject}


@contextlib.contextmanager
def _quiet_lightning():
    """Silence Lightning's per-Trainer info lines (GPU available, ...) and its small-data warnings
    for the duration of one fit; the loggers' levels are restored afterwards."""
    names = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*(does not have many workers|number of training batches)")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def fit_mlp(features: ReplayFeatures, rows_fit: np.ndarray, y_fit: np.ndarray, rows_score: np.ndarray,
            cfg: ReplayConfig, seed: int, subject: str) -> np.ndarray:
    """Train a :class:`~brainnet.models.LagModel` with :class:`~brainnet.training.module.EncoderModule`
    on the fit trials; return its predictions (n_score, V) with the best inner-validation epoch.

    Parameters
    ----------
    rows_fit : (n_fit,) image row per fit trial; y_fit : (n_fit, V) responses.
    rows_score : (n_score,) image row per scored trial.
    seed : initialisation, dropout and batch order. The global torch RNG is forked for the fit
        (``torch.random.fork_rng``), so it is the same after the call as before.
    """
    train_rows, held_rows = inner_folds(rows_fit, cfg.inner_folds, seed)[0]
    layers = [torch.from_numpy(b) for b in features.split_layers()]
    train = _LagTrials(layers, rows_fit[train_rows], y_fit[train_rows], subject)
    val = _LagTrials(layers, rows_fit[held_rows], y_fit[held_rows], subject)
    # EncoderModule reads only the optimisation fields: constant-rate AdamW on MSE, one lr for all
    tc = TrainConfig(subjects=(subject,), loss="mse", lr=cfg.lr, readout_lr_mult=1.0, weight_decay=cfg.weight_decay,
                     warmup_steps=0, min_lr_ratio=1.0, grad_clip=None, batch_size=cfg.batch_size,
                     max_epochs=cfg.epochs, patience=None, seed=int(seed))
    keep = _KeepBest()
    with torch.random.fork_rng(devices=[]), _quiet_lightning():
        torch.manual_seed(int(seed))  # inside the fork: model init and dropout of this fit only
        model = LagModel(LagConfig(in_dims=features.widths, hidden=cfg.hidden, out_dim=cfg.out_dim,
                                   dropout=cfg.dropout), {subject: y_fit.shape[1]})
        order = torch.Generator().manual_seed(int(seed) + 1)
        loaders = (DataLoader(train, batch_size=cfg.batch_size, sampler=RandomSampler(train, generator=order),
                              collate_fn=_identity),
                   DataLoader(val, batch_size=512, shuffle=False, collate_fn=_identity))
        trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=cfg.epochs, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0, callbacks=[keep])
        trainer.fit(EncoderModule(model, tc), *loaders)
    model.load_state_dict(keep.state)
    model.eval()
    score = _LagTrials(layers, rows_score, np.zeros((len(rows_score), 0), np.float32), subject)
    with torch.no_grad():
        out = [model(score.__getitems__(list(range(s, min(s + 512, len(score)))))).numpy()
               for s in range(0, len(score), 512)]
    return np.concatenate(out) if out else np.zeros((0, y_fit.shape[1]), np.float32)


class _KeepBest(pl.Callback):
    """Keeps (in memory) the model weights of the validation with the best mean r."""

    def __init__(self):
        self.best_r, self.state = -np.inf, None

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not pl_module.history:
            return
        r = float(pl_module.history[-1]["val_r"])
        if r > self.best_r or self.state is None:
            self.best_r = r
            self.state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
