"""The setup every notebook starts with: threads, output folder, data, timer, key numbers.

A notebook's first code cell after its parameters::

    from brainnet.notebook import setup_notebook

    ctx = setup_notebook("03_memory_replay", out_dir=OUT_DIR, data_home=DATA_HOME, data_dir=DATA_DIR,
                         mini_preset=MINI_PRESET, mini_seed=SEED, threads=THREADS)
    print(ctx)

``ctx.data`` is the :class:`~brainnet.data.PreparedDataset` (``DATA_DIR``, or nsd-mini generated
and prepared in the data home when ``DATA_DIR`` is empty), ``ctx.out`` the folder for figures,
``ctx.elapsed()`` the seconds since setup and ``ctx.save_key_numbers(key)`` writes
``key_numbers.json`` there.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from brainnet.data.io import save_text
from brainnet.data.mini.home import MiniData, ensure_mini
from brainnet.data.prepared import PreparedDataset
from brainnet.paths import data_home as resolve_data_home
from brainnet.paths import output_dir

KEY_NUMBERS = "key_numbers.json"


@dataclass(frozen=True)
class NotebookContext:
    """What a notebook's cells use after setup.

    Attributes:
        name: the notebook's stem, e.g. ``"02_train_mem"``.
        out: folder for its figures and ``key_numbers.json`` (created).
        home: the data home (nsd-mini and prepared data live under it).
        data: the prepared dataset, or None when setup was asked not to open one.
        mini: where nsd-mini lives when ``data`` is nsd-mini made by setup, else None
            (``mini.ground_truth`` is its planted truth).
        mini_preset: the nsd-mini preset of ``mini`` (None without it).
        started: ``time.perf_counter()`` at setup.
    """

    name: str
    out: Path
    home: Path
    data: PreparedDataset | None = None
    mini: MiniData | None = None
    mini_preset: str | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def source(self) -> str:
        """``"nsd-mini (tiny)"``, ``"prepared dataset"`` or ``"no data"``."""
        if self.mini is not None:
            return f"nsd-mini ({self.mini_preset})"
        return "prepared dataset" if self.data is not None else "no data"

    def elapsed(self) -> float:
        """Seconds since setup."""
        return time.perf_counter() - self.started

    def save_key_numbers(self, key: Mapping) -> Path:
        """Write ``key`` as indented JSON, in its own key order, to ``out/key_numbers.json``
        (atomically); returns the path."""
        return save_text(self.out / KEY_NUMBERS, json.dumps(dict(key), indent=2))

    def __str__(self) -> str:
        lines = [f"{self.name}: outputs in {self.out}"]
        if self.data is not None:
            lines.append(f"data: {self.source} at {self.data.root} (subjects {', '.join(self.data.subjects)})")
        return "\n".join(lines)


def open_data(home: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None, *,
              mini_preset: str = "default", mini_seed: int = 0, image_size: int | None = None,
              progress: bool = False, space: str = "fsaverage") -> tuple[PreparedDataset, MiniData | None]:
    """The prepared dataset a notebook works on.

    ``data_dir`` when given (non-empty); else nsd-mini of ``mini_preset`` / ``mini_seed``, generated
    and prepared in ``space`` in the data ``home`` on first use (:func:`brainnet.data.ensure_mini`:
    one prepared folder per space). ``space`` does not apply to ``data_dir`` (a prepared dataset
    has its own units). Returns the opened dataset and the nsd-mini paths (None for ``data_dir``).
    """
    if data_dir:
        return PreparedDataset(data_dir), None
    mini = ensure_mini(home or None, preset=mini_preset, seed=mini_seed, image_size=image_size, progress=progress,
                       space=space)
    return PreparedDataset(mini.prepared), mini


def limit_threads(threads: int):
    """Use ``threads`` torch and BLAS / OpenMP threads for the rest of the process (0: leave the
    libraries' defaults). Returns threadpoolctl's limiter (``.restore_original_limits()`` undoes
    the BLAS / OpenMP part), or None for 0."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    if not threads:
        return None
    import torch
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(threads)  # first: it records the limits to restore
    torch.set_num_threads(threads)
    return limiter


def show_figures_inline() -> None:
    """In a Jupyter kernel, show matplotlib Figures (the plot functions' return values) inline as
    PNG, as ``%matplotlib inline`` does; elsewhere do nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        shell.run_line_magic("matplotlib", "inline")


def show_errors_briefly() -> None:
    """In a Jupyter kernel, show brainnet's own errors (bad input, missing weights or inputs) as the
    one line the command line prints, without the traceback; elsewhere do nothing.

    The exception keeps its type and message, so the cell still fails (papermill reports
    ``DataFormatError: <path>: expected ..., found ...``); ``%tb`` prints the traceback, and with
    ``BRAINNET_DEBUG=1`` in the environment nothing is shortened."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    from brainnet.errors import DEBUG_ENV, BrainnetError, debug_requested

    if shell is None or getattr(shell, "kernel", None) is None or debug_requested():
        return

    def brief(shell, etype, value, tb, tb_offset=None):
        # IPython records the error (the cell fails) and leaves showing it to this handler
        stb = [f"{etype.__name__}: {value}", f"(%tb shows the traceback; {DEBUG_ENV}=1 keeps it)"]
        shell._showtraceback(etype, value, stb)
        return stb

    shell.set_custom_exc((BrainnetError,), brief)


def show_library_messages(level: int | str = logging.INFO) -> None:
    """Print the ``brainnet`` logger's messages of ``level`` and above in the notebook (stderr).

    The package itself only adds a ``NullHandler``; a notebook is an application and shows them.
    Calling it again changes the level without adding a second handler.
    """
    logger = logging.getLogger("brainnet")
    logger.setLevel(level)
    if not any(getattr(h, "brainnet_notebook", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.brainnet_notebook = True
        logger.addHandler(handler)


def setup_notebook(name: str, *, out_dir: str | os.PathLike | None = None,
                   data_home: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
                   mini_preset: str = "default", mini_seed: int = 0, image_size: int | None = None,
                   space: str = "fsaverage", threads: int = 0, seed: int | None = None, open_dataset: bool = True,
                   progress: bool = False, log_level: int | str | None = logging.INFO) -> NotebookContext:
    """Prepare a notebook run and return its :class:`NotebookContext`.

    In a Jupyter kernel, Figures show inline (:func:`show_figures_inline`) and brainnet's errors as
    one line (:func:`show_errors_briefly`).

    Args:
        name: the notebook's stem; the default output folder is ``<data home>/outputs/<name>``.
        out_dir: output folder (empty or None: the default).
        data_home: data home (empty or None: ``$BRAINNET_DATA``, else ``~/brainnet_data``).
        data_dir: a prepared dataset (empty or None: nsd-mini, see :func:`open_data`).
        mini_preset, mini_seed, image_size, space: the nsd-mini to generate and prepare when ``data_dir``
            is empty (``space``: its units, e.g. ``"fship"`` adds the func1mm voxels).
        threads: torch / BLAS threads (0: the libraries' defaults), see :func:`limit_threads`.
        seed: seeds torch's global RNG once (the notebook is the run's entry point); None: not.
        open_dataset: False for a notebook that makes its data itself (``ctx.data`` is None).
        progress: progress bars while generating / preparing nsd-mini.
        log_level: the library's messages shown from this level on (:func:`show_library_messages`);
            None: logging left as it is.
    """
    started = time.perf_counter()
    show_figures_inline()
    show_errors_briefly()
    if log_level is not None:
        show_library_messages(log_level)
    if seed is not None:
        import torch

        torch.manual_seed(seed)
    limit_threads(threads)
    home = resolve_data_home(data_home or None)
    out = output_dir(out_dir or None, name, home)
    data, mini = None, None
    if open_dataset:
        data, mini = open_data(home, data_dir, mini_preset=mini_preset, mini_seed=mini_seed,
                               image_size=image_size, progress=progress, space=space)
    return NotebookContext(name=name, out=out, home=home, data=data, mini=mini,
                           mini_preset=mini_preset if mini is not None else None, started=started)
