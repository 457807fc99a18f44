"""FactorTopy RF recovery and layer hierarchy on the trial-level and the image-level dataset of one nsd-mini tree.

``PYTHONPATH=. BRAINNET_OFFLINE=1 python benchmarks/b2n_levels.py [preset] [work folder]`` generates nsd-mini of
``preset`` (default tiny), prepares it from the NSD tree (trial level) and from its Algonauts release alone (image
level), trains FactorTopy with notebook 04's settings on brainnet-tiny and its untrained twin on each, and prints
the planted-truth checks (the runs of tests/training/test_image_level_run.py).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch

from brainnet.analysis.brain_to_network import run_summary, trained_clearer
from brainnet.analysis.truth import vertex_truth
from brainnet.data.mini.generate import MiniNSDConfig, MiniNSDPaths, make_mini_nsd
from brainnet.data.prep import prepare

from tests.training.test_image_level_run import BACKBONES, SUBJECT, b2n_run

KEYS = ("rf_r_x", "rf_r_y", "hierarchy_rho", "test_mean_r", "best_val_r")


def main(preset: str = "tiny", work: str = "/tmp/b2n-levels") -> dict:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    base = Path(work) / preset
    if not (base / "tree" / ".done").is_file():
        make_mini_nsd(base / "tree", MiniNSDConfig.preset(preset), progress=False)
        (base / "tree" / ".done").write_text("ok\n")
    tree = MiniNSDPaths.under(base / "tree")
    size = MiniNSDConfig.preset(preset).image_size
    data = {"trial": prepare(tree.nsd, tree.algonauts, base / "trial", image_size=size, progress=False),
            "image": prepare(None, tree.algonauts, base / "image", image_size=size, progress=False,
                             fsaverage_dir=tree.nsd / "nsddata/freesurfer/fsaverage")}
    out = {}
    for level, ds in data.items():
        truth = vertex_truth(tree.ground_truth, ds, SUBJECT)
        rows = {}
        for name in BACKBONES:
            fit, maps, _ = b2n_run(ds, name, base / "runs" / level / name)
            rows[name] = {k: round(v, 3) for k, v in run_summary(fit, maps, truth).items() if k in KEYS}
        out[level] = {**rows, "trained_clearer": trained_clearer(rows, *BACKBONES)}
    return out


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:]), indent=1))
