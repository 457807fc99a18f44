"""How a test run splits over pytest-xdist workers (``make test``: ``-n 2 --dist loadgroup --no-loadscope-reorder``).

The work unit is a test file (its module-scoped fixtures are built once), with two exceptions: all
notebooks run under nbval form one unit (a notebook's cells run in order in one kernel, and the
notebooks share one nsd-mini data home, one after the other), and the acceptance test of the ablations
is a unit of its own, so the two halves of the acceptance fits (tests/test_acceptance.py) run on two
workers at once. The units in :data:`FIRST` are queued first, in that order; everything else fills in
beside them. Test fixtures live in ``tests/conftest.py``.

pytest-xdist's own ``xdist_group`` marks do not group on pytest 9.2 (pytest-xdist issue #1386), so the
units are defined here from the test ids, for ``--dist loadgroup``.
"""

from __future__ import annotations

import pytest

#: units queued before all others, in this order
FIRST = ("acceptance", "acceptance-ablations", "notebooks")


def scope_of(nodeid: str) -> str:
    """The work unit of the test ``nodeid``."""
    path, _, name = nodeid.partition("::")
    if path.endswith(".ipynb"):
        return "notebooks"
    if path.rsplit("/", 1)[-1] == "test_acceptance.py":
        return "acceptance-ablations" if name.startswith("test_ablations") else "acceptance"
    return path


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
