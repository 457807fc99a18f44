"""``fit_encoder`` on 2 CPU processes (Lightning DDP, gloo), run by ``test_soup_ddp.py`` as a script.

Usage: ``python _ddp_fit.py CONFIG_JSON FEATURES_PICKLE``. Lightning starts rank 1 by running this
script again with the same arguments; every rank writes ``<out_dir>/rank<r>.json`` (its validation
history and summary).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import warnings
from pathlib import Path


def main(config_json: str, features_pkl: str) -> None:
    from brainnet.training.config import TrainConfig
    from brainnet.training.fit import fit_encoder

    config = TrainConfig.load(config_json)
    with open(features_pkl, "rb") as fh:
        features = pickle.load(fh)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit_encoder(config, features=features)
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    record = {"history": result.history.to_dict("records"), "summary": result.summary,
              "best_checkpoint": result.best_checkpoint, "warnings": [str(w.message) for w in caught]}
    (Path(config.out_dir) / f"rank{rank}.json").write_text(json.dumps(record, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:])
