"""brainnet.training: fit encoding models and score them.

Modules (imported on first use of a name: ``brainnet.training.TrainConfig`` imports only
:mod:`.config`):

* :mod:`.config` - :class:`TrainConfig`, every setting of a run (saved as config.json).
* :mod:`.features` - :func:`build_features`: cached backbone tokens + memory vectors per image.
* :mod:`.batches` - :class:`EncodingDataset` / :func:`make_loader`: one-subject model batches.
* :mod:`.module` - :class:`EncoderModule`, the LightningModule wrapping a model; :mod:`.pearson_sync` -
  its validation r over several processes (per-vertex statistics gathered and merged).
* :mod:`.optim` - loss, parameter groups, warmup + cosine / constant schedule, distillation targets.
* :mod:`.fit` - :func:`fit_encoder` (train, keep top-k, score), :func:`train_trial` (Ray Tune trainable).
* :mod:`.evaluate` - per-vertex r, trial-level and challenge scores, ROI tables, image identification.
* :mod:`.baselines` - ridge (per-vertex alpha, himalaya) and PCA + linear (Algonauts tutorial).
* :mod:`.soup`, :mod:`.distill` - greedy model soup, prediction distillation.
* :mod:`.submission` - Algonauts 2023 submission files.
* :mod:`.report` - tables comparing models (notebook 02; the figures are in :mod:`brainnet.plotting`).
* :mod:`.metrics` - metric functions; :mod:`.identification` - image identification; :mod:`.grid` - Ray Tune grids.
* :mod:`.network` - the FactorTopy run of the brain-to-network maps (standardised tokens).
* :mod:`.b2n_config` - :class:`B2NConfig`, that run's settings as presets ("notebook", "bddn").
* :mod:`.replay_fit`, :mod:`.replay_mlp`, :mod:`.replay_grid` - the memory-replay lag models and grid.
"""

from __future__ import annotations

from brainnet._lazy import lazy_exports

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "TrainConfig": "config",
    "build_features": "features", "resolve_backbone": "features",
    "EncodingDataset": "batches", "FeatureSet": "batches", "ImagePixels": "batches", "SubjectTrials": "batches",
    "make_loader": "batches", "subject_vertices": "batches",
    "EncoderModule": "module",
    "FitResult": "fit", "fit_encoder": "fit", "load_model": "run_setup", "run_key": "fit", "train_trial": "fit",
    "EvalResult": "evaluate", "Predictions": "evaluate", "SubjectMeta": "evaluate", "evaluate_predictions": "evaluate",
    "predict_dataset": "evaluate",
    "BaselineResult": "baselines", "fit_pca_linear": "baselines", "fit_ridge": "baselines",
    "SoupResult": "soup", "greedy_soup": "soup", "soup_checkpoints": "soup",
    "distill": "distill", "ensemble_predictions": "distill",
    "write_submission": "submission",
    "ablation_table": "report", "roi_score_table": "report",
    "PearsonAccumulator": "metrics", "mean_noise_normalized_score": "metrics", "noise_normalized_score": "metrics",
    "pearson_r": "metrics", "roi_means": "metrics", "ChallengeScore": "metrics", "challenge_score": "metrics",
    "run_grid": "grid", "grid_search": "grid",
    "network_features": "network", "standardize_tokens": "network",
    "B2NConfig": "b2n_config",
    "ReplayConfig": "replay_fit", "replay_features": "replay_fit", "run_replay": "replay_grid",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
