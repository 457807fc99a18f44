"""How a test run splits over pytest-xdist workers (``make test``: ``-n 2 --dist loadgroup --no-loadscope-reorder``).

The work unit is a test file (its module-scoped fixtures are built once), with two exceptions: all
notebooks run under nbval form one unit (a notebook's cells run in order in one kernel, and the
notebooks share one nsd-mini data home, one after the other), and the acceptance test of the ablations
is a unit of its own, so the two halves of the acceptance fits (tests/test_acceptance.py) run on two
workers at once. The units in :data:`FIRST` are queued first, in that order; everything else fills in
beside them. Each worker gets its share of the cores for torch, BLAS and the notebooks' kernels (one
thread each on 2 cores: two processes with two threads each on two cores run several times slower).
Test fixtures live in ``tests/conftest.py``.

pytest-xdist's own ``xdist_group`` marks do not group on pytest 9.2 (pytest-xdist issue #1386), so the
units are defined here from the test ids, for ``--dist loadgroup``.
"""

from __future__ import annotations

import os

import pytest

#: units queued before all others, in this order
FIRST = ("acceptance", "acceptance-ablations", "notebooks")


def scope_of(nodeid: str) -> str:
    """The work unit of the test ``nodeid``."""
    path, _, name = nodeid.partition("::")
    if path.endswith(".ipynb") or name.startswith("ipynb::"):  # nbval cells (pytest 9.2 ids: "nb/01_x::ipynb::Cell 0")
        return "notebooks"
    if path.rsplit("/", 1)[-1] == "test_acceptance.py":
        return "acceptance-ablations" if name.startswith("test_ablations") else "acceptance"
    return path


def _worker_threads() -> int | None:
    """Threads per pytest-xdist worker (None outside a worker)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if not os.environ.get("PYTEST_XDIST_WORKER") or workers < 1:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // workers)


def pytest_configure(config: pytest.Config) -> None:
    threads = _worker_threads()
    if threads is None:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)  # libraries loaded later and subprocesses (notebook kernels)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)  # BLAS pools already loaded (numpy)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        scope = scope_of(item.nodeid)
        return FIRST.index(scope) if scope in FIRST else len(FIRST)

    items.sort(key=rank)  # stable: the order within a unit and among the other units is kept


try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # pytest-xdist not installed: tests run in one process
    LoadScopeScheduling = None

if LoadScopeScheduling is not None:

    class UnitScheduling(LoadScopeScheduling):
        """xdist's scope scheduling with the units of :func:`scope_of`."""

        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    def pytest_xdist_make_scheduler(config: pytest.Config, log):
        if config.getvalue("dist") == "loadgroup":
            return UnitScheduling(config, log)
        return None
