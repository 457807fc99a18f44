"""Where brainnet keeps generated data: argument, then environment variable, then home.

``BRAINNET_DATA`` overrides the default data home ``~/brainnet_data``.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_home(path: str | os.PathLike | None = None) -> Path:
    """The folder for generated and prepared datasets.

    ``path`` if given and non-empty, else ``$BRAINNET_DATA``, else ``~/brainnet_data``.
    The folder is created if missing.
    """
    if path:
        home = Path(path)
    elif os.environ.get("BRAINNET_DATA"):
        home = Path(os.environ["BRAINNET_DATA"])
    else:
        home = Path.home() / "brainnet_data"
    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def output_dir(path: str | os.PathLike | None, name: str, home: str | os.PathLike | None = None) -> Path:
    """A notebook's output folder: ``path`` if given, else ``<data home>/outputs/<name>``; created."""
    out = Path(path).expanduser().resolve() if path else data_home(home) / "outputs" / name
    out.mkdir(parents=True, exist_ok=True)
    return out
