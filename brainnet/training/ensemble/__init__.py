"""The ROI-model ensemble (the Memory Encoding Model's 111-model recipe), resumable, in small modules.

* :mod:`.partitions`: :class:`Partition`, :func:`atlas_groups` (9 anatomical groups),
  :func:`model_clusters` (cosine k-means + Ward linkage of a whole-brain model's readout weights),
  :func:`random_partitions`.
* :mod:`.recipe`: :class:`EnsembleConfig` (defaults: the seed's 111 models; :meth:`EnsembleConfig.reduced`
  for CPU), :func:`run_ensemble` (stage 1 whole-brain models, stage 2 one member per group, each run a
  Ray Tune trial through ``fit_encoder``, souped; finished runs are skipped on a rerun).
* :mod:`.combine`: :func:`combine_predictions` (per-vertex plain mean or validation-r weighting),
  :func:`evaluate_ensemble` (best single model vs both combinations).

Batched members are one model, :class:`brainnet.models.MemEnsemble`.

>>> run = run_ensemble(TrainConfig(data_dir=prepared, max_epochs=10), EnsembleConfig.reduced(), "runs/ens")
>>> evaluate_ensemble(run, "heldout").summary
"""

from .combine import COMBINES, EnsembleScores, MemberPredictions, combine_predictions, evaluate_ensemble
from .partitions import (
    ATLAS_GROUPS,
    KMEANS_CLUSTERS,
    Partition,
    atlas_groups,
    model_clusters,
    random_partitions,
    readout_weights,
    subject_vertex_counts,
)
from .recipe import EnsembleConfig, EnsembleRun, RunSpec, run_ensemble, soup_or_best, train_member

__all__ = [
    "ATLAS_GROUPS", "COMBINES", "KMEANS_CLUSTERS", "EnsembleConfig", "EnsembleRun", "EnsembleScores",
    "MemberPredictions", "Partition", "RunSpec", "atlas_groups", "combine_predictions", "evaluate_ensemble",
    "model_clusters", "random_partitions", "readout_weights", "run_ensemble", "soup_or_best", "subject_vertex_counts",
    "train_member",
]
