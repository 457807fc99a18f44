"""The demo runner: papermill execution, HTML export, figures and key numbers collected."""

from __future__ import annotations

import json

import pytest

from brainnet.demo import find_notebooks, run_demo


def test_run_demo_on_notebook_01(tmp_path):
    out = tmp_path / "demo"
    summary = run_demo(out, notebooks=["01"], parameters={"MINI_PRESET": "tiny"})
    entry = summary["notebooks"]["01_prepare"]
    assert (out / "01_prepare.ipynb").is_file() and (out / "01_prepare.html").stat().st_size > 10_000
    assert {"noise_ceiling.png", "rois.png", "memory_index.png"} <= set(entry["figures"])
    key = json.loads((out / "01_prepare" / "key_numbers.json").read_text())
    assert key == entry["key_numbers"]
    assert key["subjects"]["subj01"]["vertices"] > 0 and key["behaviour_columns"] == 35
    assert json.loads((out / "summary.json").read_text())["notebooks"]["01_prepare"]["wall_s"] > 0
    # the widget stack is installed: tqdm.auto draws its bars without "IProgress not found"
    outputs = json.dumps([c.get("outputs", []) for c in json.loads((out / "01_prepare.ipynb").read_text())["cells"]])
    assert "IProgress not found" not in outputs and "TqdmWarning" not in outputs
    # the data went under the demo folder, nowhere else
    assert (out / "data").is_dir() and key["prepared_dir"].startswith(str(out / "data"))


def test_find_notebooks_rejects_unknown_names():
    with pytest.raises(FileNotFoundError, match="no notebook named"):
        find_notebooks(["99_nothing"])
    assert find_notebooks(["01"])[0].stem == "01_prepare"
