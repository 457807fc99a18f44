"""``explore(...)``: maps of units on both hemispheres, as a JupyterLab widget or one offline HTML file.

Click details (:class:`Details`) are stored for at most ``max_detail_units`` units (the best ones by
``rank_by`` among those with details: a unit whose per-unit rows are all NaN has none) and ``max_points``
scatter points each (:func:`limit_details` applies the same limits before saving); the layer-weight bars
and the receptive-field position come from the :class:`~brainnet.explorer.maps.Layers` /
:class:`~brainnet.explorer.maps.Space` maps, which every unit has.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainnet.explorer import maps as M
from brainnet.explorer.payload import PAGE_SURFACES, Payload, check_units, encode_surfaces, png_data_url, roi_outlines

STATIC = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True, eq=False)
class Details:
    """Per-unit details shown when a unit is clicked (each optional).

    Attributes
    ----------
    lags : array [K], the lags of ``lag_profile`` (memory replay).
    lag_profile, lag_low, lag_high : arrays [V, K], r per lag and its CI bounds.
    predicted, measured : arrays [V, N], held-out responses (one point per image; e.g. an
        :class:`~brainnet.training.evaluate.EvalResult`'s ``sample_pred.T`` / ``sample_target.T``).
    A unit whose per-unit rows (lag and scatter) are all NaN has no details stored.
    image : array [H, W, 3] (uint8 or floats in [0, 1]), a held-out image the receptive field
        position (the Space map) is drawn on.
    """

    lags: np.ndarray | None = None
    lag_profile: np.ndarray | None = None
    lag_low: np.ndarray | None = None
    lag_high: np.ndarray | None = None
    predicted: np.ndarray | None = None
    measured: np.ndarray | None = None
    image: np.ndarray | None = None


#: per-unit fields of :class:`Details` (arrays [V, ...]; a unit whose rows are all NaN has none stored)
PER_UNIT = ("lag_profile", "lag_low", "lag_high", "predicted", "measured")
#: default limits of the click details: units kept (the best by ``rank_by``) and scatter points per unit
MAX_DETAIL_UNITS, MAX_POINTS = 5000, 200


def _rank(maps: dict, rank_by: str | None, n: int) -> np.ndarray:
    """Unit order for choosing detail units: by ``rank_by`` (default the first scalar map), best first."""
    name = rank_by or next((k for k, s in maps.items() if isinstance(s, M.Scalar)), None)
    if name is None:
        return np.arange(n)
    v = np.nan_to_num(np.asarray(maps[name].values, dtype=np.float64), nan=-np.inf)
    return np.argsort(-v, kind="stable")


def _detail_units(details: Details, order: np.ndarray, max_units: int) -> np.ndarray:
    """The units [D] (sorted) whose details the page keeps: the first ``max_units`` of ``order`` that have
    any per-unit detail stored (all units of ``order`` when there are none)."""
    stored = np.zeros(order.shape[0], dtype=bool)
    for name in PER_UNIT:
        a = getattr(details, name)
        if a is not None:
            a = np.asarray(a, dtype=np.float64)
            if a.ndim != 2 or a.shape[0] != order.shape[0]:
                raise ValueError(f"{name} must have shape ({order.shape[0]}, ...) (a row per unit), got {a.shape}")
            stored |= np.isfinite(a.reshape(a.shape[0], -1)).any(axis=1)
    ranked = order[stored[order]] if stored.any() else order
    return np.sort(ranked[:max_units])


def limit_details(details: Details, maps: Mapping[str, object], rank_by: str | None = None,
                  max_units: int = MAX_DETAIL_UNITS, max_points: int = MAX_POINTS) -> Details:
    """``details`` as the page keeps them: per-unit rows only for the units :func:`explore` would keep
    (others NaN), at most ``max_points`` scatter points, float32 (compact to save, see ``collect``)."""
    specs = {str(k): M.as_map(v) for k, v in maps.items()}
    n = M.n_units(next(iter(specs.values())))
    keep = np.zeros(n, dtype=bool)
    keep[_detail_units(details, _rank(specs, rank_by, n), max_units)] = True
    out = {}
    for name in PER_UNIT:
        a = getattr(details, name)
        if a is not None:
            a = np.array(a, dtype=np.float32)[:, :max_points] if name in ("predicted", "measured") else \
                np.array(a, dtype=np.float32)
            a[~keep] = np.nan
            out[name] = a
    return dataclasses.replace(details, **out)


def _encode_details(p: Payload, details: Details, order: np.ndarray, max_units: int, max_points: int) -> None:
    n = order.shape[0]
    chosen = _detail_units(details, order, max_units)
    meta: dict = {"units": p.add("detail_units", chosen.astype(np.uint32))}
    if details.lag_profile is not None:
        prof = np.asarray(details.lag_profile, dtype=np.float64)
        k = prof.shape[1]
        lags = np.arange(k) if details.lags is None else np.asarray(details.lags, dtype=np.float64)
        low = prof if details.lag_low is None else np.asarray(details.lag_low, dtype=np.float64)
        high = prof if details.lag_high is None else np.asarray(details.lag_high, dtype=np.float64)
        if prof.shape[0] != n or low.shape != prof.shape or high.shape != prof.shape or lags.shape != (k,):
            raise ValueError(f"lag_profile / lag_low / lag_high must have shape ({n}, {k}), lags ({k},)")
        stack = np.stack([prof[chosen], low[chosen], high[chosen]], axis=1)  # [D, 3, K]
        codes, lo, step = M.quantise(stack, M.VALUE_BITS)
        meta["lag"] = {"lags": lags.tolist(), "lo": lo, "step": step, "codes": p.add("lag", codes)}
    if details.predicted is not None and details.measured is not None:
        pred, meas = (np.asarray(a, dtype=np.float64)[:, :max_points] for a in (details.predicted, details.measured))
        if pred.shape != meas.shape or pred.shape[0] != n:
            raise ValueError(f"predicted / measured must have the same shape ({n}, N), got {pred.shape}, {meas.shape}")
        meta["scatter"] = {}
        for key, a in (("predicted", pred), ("measured", meas)):
            codes, lo, step = M.quantise(a[chosen], M.WEIGHT_BITS)
            meta["scatter"][key] = {"lo": lo, "step": step, "codes": p.add(f"scatter.{key}", codes)}
    if details.image is not None:
        meta["image"] = png_data_url(details.image)
    p.meta["details"] = meta


def explore(
    maps: Mapping[str, object],
    hemi=None,
    index=None,
    *,
    mesh="fsaverage5",
    rois=None,
    roi_names=None,
    details: Details | None = None,
    surfaces: tuple[str, ...] = PAGE_SURFACES,
    title: str = "brainnet explorer",
    rank_by: str | None = None,
    max_detail_units: int = MAX_DETAIL_UNITS,
    max_points: int = MAX_POINTS,
) -> Explorer:
    """An interactive explorer of per-unit maps.

    Parameters
    ----------
    maps : {name: map}, each a :class:`~brainnet.explorer.maps.Scalar` / ``Categorical`` / ``Layers`` /
        ``Space`` or a plain array (see :func:`~brainnet.explorer.maps.as_map`), all over the same V units.
    hemi, index : arrays [V] (a prepared subject's ``vertices["hemi"]`` / ``["index"]``; hemi 2 = voxel
        unit, listed beside the surfaces); both None = the maps cover every mesh vertex, lh then rh.
    mesh : a :func:`~brainnet.plotting.load_mesh` source (``"fsaverage5"``, a PreparedDataset or its path)
        or a dict {surface: Mesh} holding every name of ``surfaces``.
    rois, roi_names : ROI codes [V] (0 = none) and ``roi_names[code]``: outlines, names, hover.
    details : :class:`Details` for the click panel.
    surfaces : the surfaces offered, the first shown first.
    rank_by : scalar map choosing the detail units (default the first scalar map).
    max_detail_units, max_points : limits of the click details (see the module docstring).
    """
    specs = {str(k): M.as_map(v) for k, v in maps.items()}
    if not specs:
        raise ValueError("give at least one map")
    sizes = {k: M.n_units(s) for k, s in specs.items()}
    n = next(iter(sizes.values()))
    if any(v != n for v in sizes.values()):
        raise ValueError(f"maps cover different numbers of units: {sizes}")
    p = Payload()
    n_vertices = encode_surfaces(p, mesh, tuple(surfaces))
    uh, ui = check_units(hemi, index, n, n_vertices)
    p.meta.update(title=title, n_units=n, unit_hemi=p.add("unit_hemi", uh), unit_index=p.add("unit_index", ui))
    p.meta["maps"] = []
    for name, spec in specs.items():
        meta, bufs = M.encode_map(name, spec)
        for key, a in bufs.items():
            meta[key] = p.add(f"map.{name}.{key}", a)
        if "legend" in meta:
            meta["legend"] = png_data_url(meta["legend"])
        p.meta["maps"].append(meta)
    if rois is not None:
        codes = np.asarray(rois)
        names = list(roi_names) if roi_names is not None else [str(i) for i in range(int(codes.max()) + 1)]
        p.meta["roi"] = {"codes": p.add("roi", codes.astype(np.uint16)), "names": names}
        roi_outlines(p, codes, uh, ui, names)
    _encode_details(p, details or Details(), _rank(specs, rank_by, n), max_detail_units, max_points)
    return Explorer(p)


class Explorer:
    """The result of :func:`explore`: displays as a widget in JupyterLab; :meth:`save_html` writes a page.

    Attributes: ``meta`` (JSON-able dict), ``buffers`` {key: zlib-compressed bytes}, ``arrays``
    {key: numpy array before compression}.
    """

    def __init__(self, payload: Payload):
        self.meta = payload.meta
        self.arrays = payload.raw
        self.buffers = payload.compressed()

    def __repr__(self) -> str:
        return f"Explorer({self.meta['n_units']} units, maps {[m['name'] for m in self.meta['maps']]})"

    def widget(self):
        """An anywidget for JupyterLab (needs ``anywidget``: ``pip install 'brainnet[notebooks]'``)."""
        from brainnet.explorer.widget import ExplorerWidget

        return ExplorerWidget(self)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())

    def html(self) -> str:
        """One self-contained page: the viewer's script and style plus the data (base64), nothing fetched."""
        data = {"meta": self.meta, "buffers": {k: base64.b64encode(b).decode("ascii") for k, b in self.buffers.items()}}
        blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
        script, style = (STATIC / "explorer.js").read_text(), (STATIC / "explorer.css").read_text()
        return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{self.meta['title']}</title>"
                f"<style>{style}</style></head>\n<body><div id=\"brainnet-explorer\"></div>\n"
                f"<script type=\"application/json\" id=\"brainnet-data\">{blob}</script>\n"
                f"<script>{script}\nbrainnetExplorer.mountPage(document.getElementById('brainnet-explorer'), "
                "JSON.parse(document.getElementById('brainnet-data').textContent));</script>\n</body></html>\n")

    def save_html(self, path: str | os.PathLike) -> Path:
        """Write :meth:`html` to ``path`` (works offline, no server); returns the path."""
        from brainnet.data.io import save_text

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_text(path, self.html())
        return path
