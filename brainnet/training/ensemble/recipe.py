"""The two-stage, resumable ROI-model ensemble recipe (the Memory Encoding Model's 111 models).

Stage 1 trains the whole-brain ``mem`` model(s), one per seed. Stage 2 builds the partitions (the
anatomical groups, the model-defined clusters of the first whole-brain model's readout weights,
random splits) and trains one member per group of each partition: with ``batched=True`` all members of
a partition in one run (one :class:`~brainnet.models.MemEnsemble`, one forward over the cached
tokens for all of them), else one run per group. Every run goes through
:func:`~brainnet.training.fit.fit_encoder` (souped: ``soup_top_k`` >= 1; in a batched run each member is
souped on its own, from its own best kept checkpoints by its own validation r) as a trial of a Ray Tune
grid (:func:`~brainnet.training.grid.run_grid`, ``runner="ray"``) or in this process
(``runner="local"``, sharing one :class:`FeatureSet`).

Layout of ``out_dir``::

    whole/seed<S>/              a fit_encoder run folder per whole-brain seed
    partitions/<name>.npz       every partition (written once; a rerun reads them back)
    members/<partition>/<all | g<id>>/   a fit_encoder run folder per stage-2 run
    ray/                        Ray Tune experiments

Resuming: a run whose folder holds ``metrics.json`` and ``ensemble_run.json`` is finished and not
trained again; an interrupted one continues from its ``last.ckpt`` (``TrainConfig.resume``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from brainnet.models.configs import DictConfig

from ..config import TrainConfig
from .partitions import (
    Partition,
    atlas_groups,
    model_clusters,
    random_partitions,
    readout_weights,
    subject_vertex_counts,
)

logger = logging.getLogger(__name__)

#: File a finished run leaves in its folder (wall time, name); with metrics.json it marks the run done.
RUN_RECORD = "ensemble_run.json"
RUNNERS = ("ray", "local")


@dataclass(frozen=True)
class EnsembleConfig(DictConfig):
    """What the ensemble trains (defaults: the seed's 111-model recipe per subject set).

    Attributes
    ----------
    whole_seeds : seeds of the whole-brain models (3 in the seed)
    atlas : train the 9 anatomical groups (:func:`.partitions.atlas_groups`)
    clusters : k of each model-defined partition (:func:`.partitions.model_clusters`; (9,) in the seed)
    n_random, random_k, partition_seed : random partitions (10 of 9 groups in the seed)
    batched : all members of a partition in one run (one model); False: one run per member
    frozen_neck : every member uses the first whole-brain model's retina mapper and layer selector, frozen
    runner : "ray" (a Ray Tune grid; a cluster when RAY_ADDRESS is set) or "local" (this process)
    num_cpus, max_concurrent, cpus_per_run : Ray: CPUs of a local instance, trials at once, CPUs per trial
    """

    whole_seeds: tuple[int, ...] = (0, 1, 2)
    atlas: bool = True
    clusters: tuple[int, ...] = (9,)
    n_random: int = 10
    random_k: int = 9
    partition_seed: int = 0
    batched: bool = True
    frozen_neck: bool = False
    runner: str = "ray"
    num_cpus: int | None = None
    max_concurrent: int | None = None
    cpus_per_run: float = 1.0

    def __post_init__(self):
        if not self.whole_seeds:
            raise ValueError("whole_seeds must hold at least one seed (stage 1 needs a whole-brain model)")
        if self.runner not in RUNNERS:
            raise ValueError(f"runner must be one of {RUNNERS}, got {self.runner!r}")
        if self.n_random < 0 or self.random_k < 1 or any(k < 1 for k in self.clusters):
            raise ValueError("n_random must be >= 0, random_k and every clusters k >= 1")

    @classmethod
    def reduced(cls, **changes) -> EnsembleConfig:
        """A CPU-sized recipe: one whole-brain model, 3 model-defined clusters, 2 random partitions into 3."""
        return cls(**{**dict(whole_seeds=(0,), atlas=False, clusters=(3,), n_random=2, random_k=3), **changes})

    def n_models(self, atlas_groups_used: int = 9) -> int:
        """Models trained: whole-brain seeds + one per group of every partition (111 for the defaults)."""
        return (len(self.whole_seeds) + (atlas_groups_used if self.atlas else 0) + sum(self.clusters)
                + self.n_random * self.random_k)


@dataclass
class RunSpec:
    """One fit_encoder run of the recipe: name, stage (1 / 2), partition name ("" = whole brain), its config."""

    name: str
    stage: int
    partition: str
    config: TrainConfig

    @property
    def out_dir(self) -> Path:
        return Path(self.config.out_dir)

    def finished(self) -> bool:
        return (self.out_dir / "metrics.json").is_file() and (self.out_dir / RUN_RECORD).is_file()

    def record(self) -> dict:
        return json.loads((self.out_dir / RUN_RECORD).read_text())


@dataclass
class EnsembleRun:
    """What :func:`run_ensemble` returns: ``runs`` (name, stage, partition, groups, out_dir, wall_s, cpu_s, trained
    (False: finished before, skipped), best_val_r), ``partitions`` by name, ``specs`` (every :class:`RunSpec`)."""

    out_dir: Path
    config: EnsembleConfig
    runs: pd.DataFrame
    partitions: dict[str, Partition] = field(default_factory=dict)
    specs: list[RunSpec] = field(default_factory=list)

    @property
    def whole_dirs(self) -> list[Path]:
        return [s.out_dir for s in self.specs if s.stage == 1]


def train_member(config: dict) -> dict:
    """Ray Tune trainable (and the local runner's step): ``fit_encoder`` of ``config["train_config"]``
    (``config["features"]``: an optional FeatureSet, local runner only); writes :data:`RUN_RECORD` (wall_s, and
    cpu_s: this process's CPU seconds, all threads: less sensitive than wall time to other load on the machine)."""
    from ..fit import fit_encoder

    tc = TrainConfig.from_dict(config["train_config"])
    start, cpu = time.perf_counter(), time.process_time()
    result = fit_encoder(tc, config.get("features"))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    record = {"name": config.get("name", ""), "wall_s": wall, "cpu_s": cpu, "global_step": result.global_step,
              "best_val_r": result.summary.get("best_val_r"), "soup_val_r": result.summary.get("soup_val_r")}
    (Path(tc.out_dir) / RUN_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return record


def _run_specs(specs: list[RunSpec], ens: EnsembleConfig, out: Path, features) -> set[str]:
    """Train the unfinished specs; return the names trained now."""
    todo = [s for s in specs if not s.finished()]
    for s in specs:
        if s not in todo:
            logger.info("ensemble: %s finished before, skipped", s.name)
    if not todo:
        return set()
    if ens.runner == "local":
        for s in todo:
            logger.info("ensemble: training %s", s.name)
            train_member({"name": s.name, "train_config": s.config.to_dict(), "features": features})
    else:
        from ray import tune

        from ..grid import run_grid

        configs = {s.name: s.config.to_dict() for s in todo}
        space = {"name": tune.grid_search(sorted(configs)), "train_config": tune.sample_from(_ConfigOf(configs))}
        key = hashlib.sha256(json.dumps(sorted(configs)).encode()).hexdigest()[:8]
        table = run_grid(train_member, space, name=f"stage{todo[0].stage}-{key}", storage_path=out / "ray",
                         metric="best_val_r", mode="max", resources_per_trial={"cpu": ens.cpus_per_run},
                         max_concurrent=ens.max_concurrent, num_cpus=ens.num_cpus, verbose=0)
        errors = table[table["error"].notna()] if "error" in table else table.iloc[:0]
        if len(errors):
            raise RuntimeError(f"ensemble runs failed: {errors[['name', 'error']].to_dict('records')}")
    return {s.name for s in todo}


class _ConfigOf:
    """``tune.sample_from`` callable: the train config of the trial's ``name`` (picklable)."""

    def __init__(self, configs: dict):
        self.configs = configs

    def __call__(self, spec) -> dict:
        return self.configs[spec["name"] if "name" in spec else spec.config["name"]]


def _base(train: TrainConfig) -> TrainConfig:
    if train.model != "mem":
        raise ValueError(f"the ensemble trains 'mem' models, got model={train.model!r}")
    return train.replace(soup_top_k=train.soup_top_k or train.top_k)


def whole_specs(train: TrainConfig, ens: EnsembleConfig, out: Path) -> list[RunSpec]:
    """Stage 1: one whole-brain run per seed."""
    base = _base(train)
    return [RunSpec(f"whole-seed{s}", 1, "", base.replace(seed=int(s), out_dir=str(out / "whole" / f"seed{s}")))
            for s in ens.whole_seeds]


def build_partitions(train: TrainConfig, ens: EnsembleConfig, out: Path, whole_dir: Path) -> dict[str, Partition]:
    """The recipe's partitions, saved under ``out/partitions`` (an existing file is read back, so the
    model-defined clusters of a resumed recipe stay those its members were trained on)."""
    from ..run_setup import load_model

    folder = out / "partitions"
    wanted: dict[str, Callable[[], Partition]] = {}
    if ens.atlas:
        wanted["atlas"] = lambda: atlas_groups(train.data_dir, train.subjects)
    for k in ens.clusters:
        def clusters(k=k):
            model = load_model(soup_or_best(whole_dir), train.data_dir)
            return model_clusters(readout_weights(model), k, seed=ens.partition_seed, name=f"clusters{k}")
        wanted[f"clusters{k}"] = clusters
    if ens.n_random:
        counts = subject_vertex_counts(train.data_dir, train.subjects)
        randoms = random_partitions(counts, ens.n_random, ens.random_k, ens.partition_seed)
        for p in randoms:
            wanted[p.name] = (lambda p=p: p)
    out_parts = {}
    for name, make in wanted.items():
        path = folder / f"{name}.npz"
        if path.is_file():
            out_parts[name] = Partition.load(path)
        else:
            part = make()
            part = Partition(name, part.labels, part.group_names)
            part.save(path)
            out_parts[name] = part
    return out_parts


def soup_or_best(run_dir: str | Path) -> Path:
    """The run's soup checkpoint, else its best one (metrics.json's run)."""
    run_dir = Path(run_dir)
    soup = run_dir / "checkpoints" / "soup.ckpt"
    if soup.is_file():
        return soup
    kept = sorted((run_dir / "checkpoints").glob("epoch*.ckpt"))
    if not kept:
        raise FileNotFoundError(f"{run_dir} holds no checkpoint: train it first")
    return max(kept, key=lambda p: float(p.stem.rsplit("val_r", 1)[-1]))


def member_specs(train: TrainConfig, ens: EnsembleConfig, out: Path, partitions: dict[str, Partition],
                 neck: Path | None) -> list[RunSpec]:
    """Stage 2: per partition one run of all its groups (batched) or one run per group."""
    base = _base(train).replace(model="mem_ensemble")
    specs = []
    for name, part in partitions.items():
        groups = part.groups()
        runs = [("all", groups)] if ens.batched else [(f"g{g}", (g,)) for g in groups]
        for tag, gs in runs:
            options = {**train.model_options, "partition": str(out / "partitions" / f"{name}.npz"),
                       "groups": [int(g) for g in gs], "neck": str(neck) if neck is not None else ""}
            cfg = base.replace(model_options=options, out_dir=str(out / "members" / name / tag))
            specs.append(RunSpec(f"{name}-{tag}", 2, name, cfg))
    return specs


def run_ensemble(train: TrainConfig, ens: EnsembleConfig, out_dir: str | Path, features=None) -> EnsembleRun:
    """Train (or resume) the ensemble of ``ens`` with the settings of ``train`` (a ``mem`` TrainConfig;
    its ``out_dir`` and ``seed`` are set per run, ``soup_top_k`` defaults to ``top_k``).

    ``features``: a FeatureSet for ``runner="local"`` (None: built once from ``train``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if ens.runner == "local" and features is None:
        from brainnet.data.prepared import PreparedDataset

        from ..run_setup import config_features

        features = config_features(train, PreparedDataset(train.data_dir))
    stage1 = whole_specs(train, ens, out)
    trained = _run_specs(stage1, ens, out, features)
    parts = build_partitions(train, ens, out, stage1[0].out_dir)
    neck = soup_or_best(stage1[0].out_dir) if ens.frozen_neck else None
    stage2 = member_specs(train, ens, out, parts, neck)
    trained |= _run_specs(stage2, ens, out, features)
    rows = []
    for s in stage1 + stage2:
        rec = s.record()
        groups = s.config.model_options.get("groups", [])
        rows.append({"name": s.name, "stage": s.stage, "partition": s.partition, "groups": list(groups),
                     "n_members": max(1, len(groups)), "out_dir": str(s.out_dir), "wall_s": rec["wall_s"],
                     "cpu_s": rec.get("cpu_s"),
                     "trained": s.name in trained, "best_val_r": rec.get("best_val_r")})
    return EnsembleRun(out, ens, pd.DataFrame(rows), parts, stage1 + stage2)
