"""Fixtures shared by the data tests: the tiny nsd-mini tree (one per pytest run) and its planted truth."""

from __future__ import annotations

import pytest

from _mini_cache import ground_truth_arrays, mini_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return mini_tree(tmp_path_factory)


@pytest.fixture(scope="module")
def truth(tree):
    return ground_truth_arrays(tree)
