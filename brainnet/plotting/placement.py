"""Place values given on selected vertices back onto the full per-hemisphere meshes.

The selection is a prepared subject's vertices (``PreparedSubject.vertices``): ``hemi`` [V]
(0 lh, 1 rh) and ``index`` [V] (vertex index within that hemisphere's full mesh). Voxel units
(hemi :data:`~brainnet.data.layout.HEMI_VOLUME`) are accepted and skipped: surface maps draw vertices.
"""

from __future__ import annotations

import numpy as np

from brainnet.data.layout import HEMI_VOLUME


def check_selection(hemi, index, n_values: int, n_vertices: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Validate (or build) a vertex selection.

    Parameters
    ----------
    hemi : array of shape (V,) with values 0 (lh) / 1 (rh), or None.
    index : array of shape (V,), vertex index within the hemisphere's mesh, or None.
        With both None, the values must cover the full meshes, lh then rh
        (V = n_lh + n_rh).
    n_values : V, the number of values given.
    n_vertices : (n_lh, n_rh), vertices per hemisphere of the mesh drawn on.

    Returns
    -------
    hemi : int64 array of shape (V,)
    index : int64 array of shape (V,)
    """
    n_lh, n_rh = n_vertices
    if hemi is None and index is None:
        if n_values != n_lh + n_rh:
            raise ValueError(
                f"without hemi/index the values must cover the full mesh ({n_lh} + {n_rh} = {n_lh + n_rh} "
                f"vertices, lh then rh), got {n_values}; pass hemi and index (a prepared subject's "
                "vertices['hemi'] and vertices['index'])"
            )
        return (
            np.repeat(np.array([0, 1], dtype=np.int64), [n_lh, n_rh]),
            np.concatenate([np.arange(n_lh), np.arange(n_rh)]).astype(np.int64),
        )
    if hemi is None or index is None:
        raise ValueError("pass both hemi and index, or neither")
    hemi = np.asarray(hemi)
    index = np.asarray(index)
    if hemi.ndim != 1 or index.ndim != 1:
        raise ValueError(f"hemi and index must be 1-D, got shapes {hemi.shape} and {index.shape}")
    if hemi.shape[0] != n_values or index.shape[0] != n_values:
        raise ValueError(
            f"lengths differ: {n_values} values, {hemi.shape[0]} hemi entries, {index.shape[0]} index entries"
        )
    if not (np.issubdtype(hemi.dtype, np.integer) or hemi.dtype == bool):
        raise ValueError(f"hemi must hold integers 0 (lh) / 1 (rh), got dtype {hemi.dtype}")
    if not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"index must hold integers, got dtype {index.dtype}")
    hemi = hemi.astype(np.int64)
    index = index.astype(np.int64)
    bad = (hemi != 0) & (hemi != 1) & (hemi != HEMI_VOLUME)
    if bad.any():
        raise ValueError(f"hemi must be 0 (lh), 1 (rh) or {HEMI_VOLUME} (voxel, not drawn); "
                         f"found {np.unique(hemi[bad])[:5].tolist()}")
    for h, n in enumerate(n_vertices):
        sel = index[hemi == h]
        if sel.size == 0:
            continue
        if sel.min() < 0 or sel.max() >= n:
            raise ValueError(
                f"{'lh' if h == 0 else 'rh'} vertex index out of range: found [{sel.min()}, {sel.max()}], "
                f"the mesh has {n} vertices per hemisphere (values from fsaverage need the dataset's "
                "surfaces/fsaverage.npz as mesh)"
            )
        if np.unique(sel).size != sel.size:
            raise ValueError(f"{'lh' if h == 0 else 'rh'} vertex indices repeat; each vertex may appear once")
    return hemi, index


def to_mesh_values(values, hemi, index, n_vertices: tuple[int, int], fill: float = np.nan) -> list[np.ndarray]:
    """Scatter per-selected-vertex values onto both full hemisphere meshes.

    Parameters
    ----------
    values : array of shape (V,) or (V, K).
    hemi, index : arrays of shape (V,), see :func:`check_selection` (None, None = full mesh).
    n_vertices : (n_lh, n_rh).
    fill : value of the vertices not selected.

    Returns
    -------
    [lh, rh] : float64 arrays of shape (n_lh,) / (n_rh,) (or (n_h, K)); unselected = ``fill``.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim not in (1, 2):
        raise ValueError(f"values must have shape (V,) or (V, K), got {values.shape}")
    hemi, index = check_selection(hemi, index, values.shape[0], n_vertices)
    out = []
    for h, n in enumerate(n_vertices):
        full = np.full((n,) + values.shape[1:], fill, dtype=np.float64)
        sel = hemi == h
        full[index[sel]] = values[sel]
        out.append(full)
    return out
