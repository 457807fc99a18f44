"""Explorer inputs saved by the notebooks and gathered into one page (``brainnet demo`` -> explorer.html).

:func:`save_inputs` writes what :func:`~brainnet.explorer.explore` was given to one ``.npz`` (arrays, plus a
JSON header with the map kinds, their options, the mesh source and the ROI names); :func:`gather` explores
several such files together, their maps prefixed by a name each (the units must be the same).
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
from brainnet.explorer.core import Details, Explorer, explore, limit_details

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
    """One explorer of several saved inputs {prefix: path}: maps named ``"<prefix>: <map>"``, ROIs, mesh and
    units from the first, details merged field by field (the first file that has a field gives it).
    An input whose units differ from the first one's raises ValueError (``strict=False``: left out, logged)."""
    loaded = {k: load_inputs(p) for k, p in sources.items()}
    if not loaded:
        raise ValueError("nothing to gather")
    first = next(iter(loaded.values()))
    maps, details = {}, {}
    for prefix, inp in loaded.items():
        for key in ("hemi", "index"):
            a, b = inp[key], first[key]
            if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
                if strict:
                    raise ValueError(f"{prefix}: its units differ from the first input's ({key})")
                log.warning("%s left out of the gathered explorer: its units differ from the first input's", prefix)
                break
        else:
            _merge(prefix, inp, maps, details)
    rois = next((inp for inp in loaded.values() if inp["rois"] is not None), first)
    return explore(maps, first["hemi"], first["index"], mesh=first["mesh"] or "fsaverage5", rois=rois["rois"],
                   roi_names=rois["roi_names"], details=Details(**details), title=title)


def _merge(prefix: str, inp: dict, maps: dict, details: dict) -> None:
    maps.update({f"{prefix}: {name}": spec for name, spec in inp["maps"].items()})
    if inp["details"] is not None:
        for f in dataclasses.fields(Details):
            v = getattr(inp["details"], f.name)
            if v is not None and f.name not in details:
                details[f.name] = v
