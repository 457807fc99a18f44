"""Static checks of the notebooks: papermill sees every parameter, no outputs are committed."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import papermill as pm
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_the_four_notebooks_exist():
    stems = [p.stem for p in NOTEBOOKS]
    assert stems[:1] == ["01_prepare"], stems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_fully_visible_to_papermill(path):
    nb = nbformat.read(str(path), as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters', found {len(tagged)}"
    assigned = {t.id for node in ast.parse(tagged[0].source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    assert assigned, "the parameters cell assigns nothing"
    assert all(name.isupper() for name in assigned), sorted(assigned)
    inferred = set(pm.inspect_notebook(str(path)))
    assert inferred == assigned, f"papermill cannot parse {sorted(assigned - inferred)} (no '=' in comments)"
    assert {"OUT_DIR", "DATA_HOME"} <= assigned


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_outputs_committed(path):
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} has stored outputs"
