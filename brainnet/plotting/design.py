"""Figures of the experimental design (memory index of a run)."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from brainnet.plotting.render import save_figure


def plot_memory_index(memory_index, *, axes=None, figure=None, output_file=None, title: str | None = None,
                      max_lag: int | None = None) -> Figure:
    """Show which image each trial's memory frames hold.

    Parameters
    ----------
    memory_index : int array of shape (n_trials, 33); column k = image row shown k slots back,
        -1 = blank slot or outside the run (drawn white).
    max_lag : show lags 0..max_lag only (default: all columns).

    Each distinct image gets its own colour, so an image moving one lag further back with each
    trial shows as a diagonal stripe; repeats of an image within the run share a colour.
    """
    mi = np.asarray(memory_index)
    if mi.ndim != 2:
        raise ValueError(f"memory_index must be 2-D (n_trials, n_lags), got shape {mi.shape}")
    if max_lag is not None:
        mi = mi[:, : max_lag + 1]
    images, codes = np.unique(mi, return_inverse=True)
    codes = codes.reshape(mi.shape).astype(float)
    blank = mi < 0
    codes[blank] = np.nan
    rng = np.random.default_rng(0)
    colours = rng.uniform(0.15, 0.9, size=(max(len(images), 1), 3))
    if figure is None and axes is None:
        figure = Figure(figsize=(7, 5), layout="constrained")
    ax = axes if axes is not None else figure.add_subplot()
    fig = ax.figure
    cmap = ListedColormap(colours)
    cmap.set_bad("white")
    ax.imshow(np.ma.masked_invalid(codes), aspect="auto", interpolation="nearest", cmap=cmap,
              vmin=-0.5, vmax=len(images) - 0.5)
    ax.set_xlabel("frames back (T = -k); 0 = current image")
    ax.set_ylabel("stimulus trial in run")
    ax.set_title(title or "memory index (white = blank slot or before the run)")
    save_figure(fig, output_file, dpi=120)
    return fig
