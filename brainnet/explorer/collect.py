"""Explorer inputs saved by the notebooks and gathered into one page (``brainnet demo`` -> explorer.html).

:func:`save_inputs` writes what :func:`~brainnet.explorer.explore` was given to one ``.npz`` (arrays, plus a
JSON header with the map kinds, their options, the mesh source and the ROI names); :func:`gather` explores
several such files together, their maps prefixed by a name each (units matched by hemi and index).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from brainnet.explorer import maps as M
from brainnet.explorer.core import PER_UNIT, Details, Explorer, explore, limit_details

log = logging.getLogger(__name__)

#: the file each notebook writes into its output folder (``brainnet demo`` gathers them)
INPUTS_FILE = "explorer_inputs.npz"
KINDS = {cls.__name__: cls for cls in (M.Scalar, M.Categorical, M.Layers, M.Space)}


def save_inputs(path: str | os.PathLike, maps: Mapping[str, object], hemi=None, index=None, *, mesh=None,
                rois=None, roi_names=None, details: Details | None = None) -> Path:
    """Write explore's inputs to ``path`` (.npz); ``mesh`` must be a path or a packaged mesh name (or None).
    Details are saved as the page keeps them (:func:`~brainnet.explorer.core.limit_details`)."""
    arrays: dict[str, np.ndarray] = {}
    if mesh is not None and not isinstance(mesh, (str, os.PathLike)):
        mesh = mesh.root  # a PreparedDataset
    header: dict = {"mesh": None if mesh is None else os.fspath(mesh), "maps": [],
                    "roi_names": None if roi_names is None else [str(n) for n in roi_names]}
    for key, value in (("hemi", hemi), ("index", index), ("rois", rois)):
        if value is not None:
            arrays[key] = np.asarray(value)
    for i, (name, value) in enumerate(maps.items()):
        spec = M.as_map(value)
        entry = {"name": str(name), "kind": type(spec).__name__, "options": {}, "arrays": []}
        for f in dataclasses.fields(spec):
            v = getattr(spec, f.name)
            if isinstance(v, np.ndarray) or (f.name in ("values", "codes", "weights", "xy")):
                arrays[f"map{i}.{f.name}"] = np.asarray(v)
                entry["arrays"].append(f.name)
            else:
                entry["options"][f.name] = list(v) if isinstance(v, tuple) else v
        header["maps"].append(entry)
    details = limit_details(details, maps) if details is not None else None
    for f in dataclasses.fields(Details):
        v = getattr(details, f.name) if details is not None else None
        if v is not None:
            arrays[f"details.{f.name}"] = np.asarray(v)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, header=np.array(json.dumps(header)), **arrays)
    return path


def load_inputs(path: str | os.PathLike) -> dict:
    """explore's keyword arguments from a :func:`save_inputs` file (``maps`` as specs)."""
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
        data = {k: z[k] for k in z.files if k != "header"}
    maps = {}
    for i, entry in enumerate(header["maps"]):
        fields = {f: data[f"map{i}.{f}"] for f in entry["arrays"]}
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in entry["options"].items()}
        maps[entry["name"]] = KINDS[entry["kind"]](**fields, **options)
    det = {k.split(".", 1)[1]: v for k, v in data.items() if k.startswith("details.")}
    return {"maps": maps, "hemi": data.get("hemi"), "index": data.get("index"), "mesh": header["mesh"],
            "rois": data.get("rois"), "roi_names": header["roi_names"], "details": Details(**det) if det else None}


def gather(sources: Mapping[str, str | os.PathLike], title: str = "brainnet demo", strict: bool = True) -> Explorer:
    """One explorer of several saved inputs {prefix: path}: maps named ``"<prefix>: <map>"``.

    Units are matched by (hemi, index): the page has every unit of any input (those of the input with the
    most units first), a map is NaN (categorical: code 0) on units its input lacks, so notebook 02's
    surface vertices and notebook 03's vertices plus voxels share one page. Mesh from the first input,
    ROIs from the largest input that has them, details merged field by field (the first file that has a
    field gives it). An input without hemi / index, or sharing no unit with the others, raises ValueError
    (``strict=False``: left out, logged)."""
    loaded = {k: load_inputs(p) for k, p in sources.items()}
    if not loaded:
        raise ValueError("nothing to gather")
    first = next(iter(loaded.values()))
    if first["hemi"] is None or first["index"] is None:
        if len(loaded) > 1:
            raise ValueError("gathering needs each input's hemi and index")
        return explore(first["maps"], mesh=first["mesh"] or "fsaverage5", rois=first["rois"],
                       roi_names=first["roi_names"], details=first["details"], title=title)
    ok = {}
    for prefix, inp in loaded.items():
        keys = _keys(inp)
        if keys is None or (ok and not set(keys) & set().union(*(_keys(i) for i in ok.values()))):
            if strict:
                raise ValueError(f"{prefix}: its units differ from the first input's (no hemi / index in common)")
            log.warning("%s left out of the gathered explorer: its units differ from the first input's", prefix)
            continue
        ok[prefix] = inp
    largest = max(ok.values(), key=lambda i: len(i["hemi"]))
    units = {k: n for n, k in enumerate(_keys(largest))}
    for inp in ok.values():
        for k in _keys(inp):
            units.setdefault(k, len(units))
    hemi = np.array([k[0] for k in units], dtype=np.int64)
    index = np.array([k[1] for k in units], dtype=np.int64)
    maps, details = {}, {}
    for prefix, inp in ok.items():
        rows = np.array([units[k] for k in _keys(inp)])
        maps.update({f"{prefix}: {name}": _expand_map(spec, rows, len(units)) for name, spec in inp["maps"].items()})
        if inp["details"] is not None:
            for f in dataclasses.fields(Details):
                v = getattr(inp["details"], f.name)
                if v is not None and f.name not in details:
                    details[f.name] = _expand(v, rows, len(units), np.nan) if f.name in PER_UNIT else v
    with_rois = [i for i in ok.values() if i["rois"] is not None]
    roi_src = max(with_rois, key=lambda i: len(i["hemi"])) if with_rois else None
    rois = None
    if roi_src is not None:
        rois = _expand(roi_src["rois"], np.array([units[k] for k in _keys(roi_src)]), len(units), 0)
    return explore(maps, hemi, index, mesh=first["mesh"] or "fsaverage5", rois=rois,
                   roi_names=None if roi_src is None else roi_src["roi_names"], details=Details(**details), title=title)


def _keys(inp: dict) -> list[tuple[int, int]] | None:
    """(hemi, index) of every unit of a loaded input (None without them)."""
    if inp["hemi"] is None or inp["index"] is None:
        return None
    return list(zip(np.asarray(inp["hemi"]).tolist(), np.asarray(inp["index"]).tolist()))


def _expand(a, rows: np.ndarray, n: int, fill):
    """``a`` [V', ...] placed at ``rows`` of an [n, ...] array filled with ``fill`` elsewhere."""
    a = np.asarray(a)
    out = np.full((n,) + a.shape[1:], fill, dtype=np.result_type(a.dtype, np.asarray(fill).dtype))
    out[rows] = a
    return out


def _expand_map(spec, rows: np.ndarray, n: int):
    """A map over n units: NaN (categorical: code 0) on the units it lacks."""
    if isinstance(spec, M.Categorical):
        return dataclasses.replace(spec, codes=_expand(spec.codes, rows, n, 0))
    field = {M.Scalar: "values", M.Layers: "weights", M.Space: "xy"}[type(spec)]
    return dataclasses.replace(spec, **{field: _expand(np.asarray(getattr(spec, field), np.float64), rows, n, np.nan)})
