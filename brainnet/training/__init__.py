"""brainnet.training: fit encoding models and score them.

Modules (imported on demand; nothing heavy is imported with the package):

* :mod:`.config` - :class:`TrainConfig`, every setting of a run (saved as config.json).
* :mod:`.features` - :func:`build_features`: cached backbone tokens + memory vectors per image.
* :mod:`.batches` - :class:`EncodingDataset` / :func:`make_loader`: one-subject model batches.
* :mod:`.module` - :class:`EncoderModule`, the LightningModule wrapping a model.
* :mod:`.optim` - loss, parameter groups, warmup + cosine schedule, distillation targets.
* :mod:`.fit` - :func:`fit_encoder` (train, keep top-k, score), :func:`train_trial` (Ray Tune trainable).
* :mod:`.evaluate` - per-vertex r, noise-normalised score, ROI tables, image identification.
* :mod:`.baselines` - ridge (per-vertex alpha, himalaya) and PCA + linear (Algonauts tutorial).
* :mod:`.soup`, :mod:`.distill` - greedy model soup, prediction distillation.
* :mod:`.submission` - Algonauts 2023 submission files.
* :mod:`.report` - tables comparing models (notebook 02; the figures are in :mod:`brainnet.plotting`).
* :mod:`.metrics` - metric functions; :mod:`.grid` - Ray Tune grids.
"""
