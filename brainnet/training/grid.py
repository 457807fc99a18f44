"""Grids of models on Ray Tune: ensembles, ablations, the memory-replay subject x lag grid.

One call, :func:`run_grid`, runs every configuration of a parameter space as a Ray Tune trial
and returns one table row per trial. Ray does the scheduling, resource accounting, fault
tolerance and resuming; this module only chooses readable trial names, a reproducible seed per
trial and a tidy result table.

Where the trials run
--------------------
* ``RAY_ADDRESS`` set (e.g. ``ray://head:10001`` or ``auto``): :func:`ensure_ray` connects to
  that cluster with ``ray.init()`` and changes nothing about it (no CPU count, no dashboard
  setting). ``storage_path`` must then be a folder every node can reach (NFS) or a cloud URI.
* Ray already initialised in this process (e.g. a notebook called ``ray.init`` itself): used as
  it is.
* Otherwise, with ``local_ray=True``: a local Ray instance is started with
  ``ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)`` and left
  running for the next grid (``ray.shutdown()`` ends it).

Resuming
--------
Trial results live in ``storage_path/name``. With ``resume=True`` and an experiment already
there, the experiment is restored (``tune.Tuner.restore(..., resume_unfinished=True,
resume_errored=True)``): finished trials are kept and not rerun, unfinished and errored ones are
run again. The grid saved in the experiment is the one resumed: a changed ``param_space`` is not
picked up (use a new ``name``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd

__all__ = ["ensure_ray", "grid_search", "run_grid", "trial_seed", "trial_label"]

# Keys Ray adds to every result; they are dropped from the table (timing/iteration are kept).
_RAY_BOOKKEEPING = frozenset(
    {
        "config", "date", "timestamp", "pid", "hostname", "node_ip", "done", "experiment_tag",
        "checkpoint_dir_name", "should_checkpoint", "iterations_since_restore",
        "time_since_restore", "time_this_iter_s",
    }
)
_MAX_LABEL_CHARS = 120


def ensure_ray(
    local_ray: bool = True, num_cpus: int | None = None, start_attempts: int = 2
) -> bool:
    """Make sure this process is connected to Ray; return True when it started a local instance.

    Parameters
    ----------
    local_ray : start a local instance when Ray is neither initialised nor named by
        ``RAY_ADDRESS``; with False that case raises ``RuntimeError`` instead.
    num_cpus : CPUs of a newly started local instance (None: all of this machine's). Ignored
        when connecting to an existing cluster.
    start_attempts : tries at starting a local instance. Ray gives its raylet a fixed 30 s to
        register; on a heavily loaded machine that can run out, and a second try (after
        ``ray.shutdown()``) usually succeeds.
    """
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()  # address taken from RAY_ADDRESS; the cluster's own settings are kept
        return False
    if not local_ray:
        raise RuntimeError(
            "Ray is not running and RAY_ADDRESS is not set: call ray.init(...) first, set "
            "RAY_ADDRESS to a cluster, or pass local_ray=True to start a local instance"
        )
    for attempt in range(1, max(int(start_attempts), 1) + 1):
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            return True
        except Exception as err:  # Ray raises a bare Exception on a startup timeout
            ray.shutdown()
            if "timed out during startup" not in str(err) or attempt >= start_attempts:
                raise
            warnings.warn(
                f"Ray start attempt {attempt} timed out (machine busy?); trying again",
                RuntimeWarning,
                stacklevel=2,
            )
    return True  # pragma: no cover - the loop returns or raises


def trial_seed(values: Mapping[str, Any], base_seed: int = 0) -> int:
    """A reproducible seed in [0, 2**31) derived from a trial's parameter values.

    The seed depends only on ``base_seed`` and the (key, value) pairs — not on the order in
    which trials run or on the process — so a rerun or resumed grid gives a trial the same seed.
    Values should be JSON-serialisable (numpy scalars count as numbers; other values are
    taken by ``repr``).
    """
    text = json.dumps({k: values[k] for k in sorted(values)}, sort_keys=True, default=_jsonable)
    digest = hashlib.sha256(f"{int(base_seed)}|{text}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _jsonable(value: Any) -> Any:
    """numpy scalars as Python numbers (so np.int64(3) seeds like 3), anything else by repr."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else repr(value)


class _SeedFromAxes:
    """``tune.sample_from`` callable: seed = :func:`trial_seed` of the grid axes' values.

    A class (not a lambda) so the experiment state pickles and restores cleanly.
    """

    def __init__(self, axes: tuple[str, ...], base_seed: int):
        self.axes = axes
        self.base_seed = base_seed

    def __call__(self, config: Mapping[str, Any]) -> int:
        return trial_seed({k: config[k] for k in self.axes}, self.base_seed)


def grid_search(*, base_seed: int | None = 0, **axes: Iterable[Any]) -> dict[str, Any]:
    """Full-factorial parameter space: every combination of the axes' values is one trial.

    ``grid_search(subject=[1, 2], lag=range(33))`` -> 66 trials. Unless ``seed`` is itself an
    axis (e.g. ``seed=range(5)`` for an ensemble) or ``base_seed`` is None, each trial also gets
    ``config["seed"] = trial_seed(axis values, base_seed)``: distinct per trial, reproducible.

    Returns a ``param_space`` for :func:`run_grid` (``{name: tune.grid_search(values)}``).
    """
    from ray import tune

    space: dict[str, Any] = {}
    for key, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise TypeError(f"grid axis {key!r} must be a list of values, got {values!r}")
        values = list(values)
        if not values:
            raise ValueError(f"grid axis {key!r} has no values")
        space[key] = tune.grid_search(values)
    if base_seed is not None and "seed" not in axes:
        space["seed"] = tune.sample_from(_SeedFromAxes(tuple(axes), int(base_seed)))
    return space


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "-".join(_short(v) for v in value)
    return str(value)


def trial_label(trial: Any) -> str:
    """Readable trial name / folder: ``<trainable>_<5-digit index>_<key=value,...>``.

    Only scalar, list and tuple config values are spelled out; characters other than letters,
    digits, ``.=,_-`` become ``-``; the label is cut to 120 characters (the index keeps it unique).
    Used as both ``trial_name_creator`` and ``trial_dirname_creator``.
    """
    index = str(trial.trial_id).rsplit("_", 1)[-1]
    parts = [
        f"{k}={_short(v)}"
        for k, v in sorted(trial.config.items())
        if isinstance(v, (int, float, str, bool, list, tuple)) and k != "seed"
    ]
    label = f"{trial.trainable_name}_{index}" + ("_" + ",".join(parts) if parts else "")
    label = re.sub(r"[^A-Za-z0-9.=,_-]", "-", label)
    return label[:_MAX_LABEL_CHARS]


def _error_text(error: BaseException | None) -> str | None:
    """``"<ExceptionType>: <message>"`` of the trainable's own exception (Ray's wrapper removed)."""
    if error is None:
        return None
    cause = getattr(error, "cause", None)
    error = cause if isinstance(cause, BaseException) else error
    return f"{type(error).__name__}: {error}"


def _result_rows(result_grid: Any) -> pd.DataFrame:
    rows = []
    for result in result_grid:
        metrics = dict(result.metrics or {})
        config = dict(result.config or metrics.get("config") or {})
        row: dict[str, Any] = {"trial_id": metrics.get("trial_id"), "trial_dir": result.path}
        row.update(config)
        for key, value in metrics.items():
            if key in _RAY_BOOKKEEPING or key == "trial_id":
                continue
            row[f"metric/{key}" if key in row else key] = value
        row["error"] = _error_text(result.error)
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values("trial_dir", kind="stable").reset_index(drop=True)
    return table


def run_grid(
    trainable: Callable[[dict], dict],
    param_space: dict[str, Any],
    name: str,
    storage_path: str | os.PathLike,
    metric: str,
    mode: str,
    resources_per_trial: Mapping[str, float] | None = None,
    max_concurrent: int | None = None,
    resume: bool = True,
    local_ray: bool = True,
    num_cpus: int | None = None,
    verbose: int = 1,
) -> pd.DataFrame:
    """Run every trial of ``param_space`` on Ray Tune; return one row per trial.

    Parameters
    ----------
    trainable : ``f(config: dict) -> dict`` of final metrics (a module-level function, so that
        Ray can ship it to workers and a resumed experiment can find it again). It may also
        report intermediate results with ``ray.tune.report``.
    param_space : e.g. from :func:`grid_search`; any Ray Tune search space works.
    name : experiment name; results go to ``storage_path/name``.
    storage_path : folder (made absolute) or cloud URI; on a cluster every node must reach it.
    metric, mode : the metric to rank trials by and ``"min"`` or ``"max"``.
    resources_per_trial : Ray resources per trial (default ``{"cpu": 1}``; ``{"cpu": 4,
        "gpu": 1}`` for a GPU model).
    max_concurrent : at most this many trials at once (None: as many as resources allow).
    resume : continue an existing experiment of that name (finished trials are not rerun);
        with False an existing experiment folder is an error.
    local_ray, num_cpus : see :func:`ensure_ray`.
    verbose : Ray Tune's console verbosity (0 silent .. 2 every result).

    Returns
    -------
    DataFrame, one row per trial sorted by trial folder: ``trial_id``, ``trial_dir``, the
    trial's config values (one column per key), its last reported metrics (a metric whose
    name clashes with a config key is stored as ``metric/<name>``), ``time_total_s``,
    ``training_iteration`` and ``error`` (None, or ``"<ExceptionType>: <message>"`` for an
    errored trial; errored trials never stop the others).
    """
    from ray import tune

    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if not name or os.sep in name or name in (".", ".."):
        raise ValueError(f"name must be a plain folder name, got {name!r}")
    if max_concurrent is not None and max_concurrent < 1:
        raise ValueError(f"max_concurrent must be >= 1 or None, got {max_concurrent}")
    resources = dict(resources_per_trial) if resources_per_trial is not None else {"cpu": 1}
    storage = str(storage_path)
    if "://" not in storage:
        storage = os.path.abspath(os.path.expanduser(storage))
    experiment_path = f"{storage.rstrip('/')}/{name}"

    ensure_ray(local_ray=local_ray, num_cpus=num_cpus)
    wrapped = tune.with_resources(trainable, resources)

    if tune.Tuner.can_restore(experiment_path):
        if not resume:
            raise FileExistsError(
                f"{experiment_path} already holds a Ray Tune experiment: pass resume=True to "
                "continue it, or choose another name / remove the folder to start afresh"
            )
        # the same param_space again: functions in it (the trial seeds of grid_search) are stored
        # as placeholders, and trials not yet started at a crash would keep them as their values
        tuner = tune.Tuner.restore(
            experiment_path, wrapped, resume_unfinished=True, resume_errored=True,
            param_space=param_space,
        )
    else:
        tuner = tune.Tuner(
            wrapped,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=metric,
                mode=mode,
                max_concurrent_trials=max_concurrent,
                trial_name_creator=trial_label,
                trial_dirname_creator=trial_label,
            ),
            run_config=tune.RunConfig(name=name, storage_path=storage, verbose=verbose),
        )
    return _result_rows(tuner.fit())

