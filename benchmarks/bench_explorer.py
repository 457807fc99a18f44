"""Explorer page size and load time in headless Chromium (a benchmark script, not a timed test).

Cases:

* ``fsaverage``: a full-resolution fsaverage stand-in, an icosphere subdivided 7 times (163,842 vertices and
  327,680 faces per hemisphere, as fsaverage), with an "inflated" ellipsoid, the sphere and the flattened
  occipital cap; six maps over every vertex (score, noise ceiling, ROIs, layer weights over 8 layers,
  (x, y) position, scale), smooth functions of position as real maps are; click details (17-lag profile
  with CI, 200 held-out points) for the default 5,000 best units.
* ``nsd-mini``: the prepared nsd-mini (``--preset``, in $BRAINNET_DATA) with the same kinds of maps
  over its vertices and its surfaces.

For each: the HTML size (and without click details), the time ``explore`` takes, and the time from
navigation start to the first finished frame (``gl.finish``) in the system's headless Chromium with
SwiftShader (median of ``--repeats`` page loads), plus the time to switch map and surface.

    python benchmarks/bench_explorer.py                  # both cases
    python benchmarks/bench_explorer.py --case fsaverage --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from brainnet.data.surface import HemiMesh, Mesh, flatten_occipital_cap
from brainnet.explorer import Categorical, Details, Layers, Space, explore, scale_map
from brainnet.explorer.browser import browser_missing, console_errors, headless_chromium, open_page


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere: vertices [10 * 4**s + 2, 3], faces [20 * 4**s, 3] (outward, counter-clockwise)."""
    t = (1 + 5**0.5) / 2
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
                  [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], dtype=np.float64)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
                  [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
                  [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]], dtype=np.int64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(subdivisions):
        edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        uniq, inv = np.unique(edges, axis=0, return_inverse=True)
        mid = v[uniq].mean(axis=1)
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        m = inv.ravel().reshape(3, -1).T + v.shape[0]  # midpoints of edges (01, 12, 20) of each face
        v = np.concatenate([v, mid])
        a, b, c = f.T
        f = np.concatenate([np.stack([a, m[:, 0], m[:, 2]], 1), np.stack([b, m[:, 1], m[:, 0]], 1),
                            np.stack([c, m[:, 2], m[:, 1]], 1), m])
    return v, f


def fsaverage_standin(subdivisions: int = 7) -> tuple[dict[str, Mesh], np.ndarray]:
    """{surface: Mesh} for inflated / flat / sphere, and every vertex's sphere position [2n, 3] (lh then rh)."""
    v, f = icosphere(subdivisions)
    sphere = v * 100.0
    sulc = np.sin(3 * v[:, 0]) * np.cos(4 * v[:, 1]) + 0.5 * np.sin(7 * v[:, 2])
    inflated = v * np.array([35.0, 80.0, 50.0])
    flat_xy, flat_faces = flatten_occipital_cap(sphere, f, 100.0)
    out = {}
    for name, coords, faces, is_flat in (("inflated", inflated, f, False), ("sphere", sphere, f, False),
                                         ("flat", flat_xy, flat_faces, True)):
        lh = HemiMesh(coords=coords, faces=faces, sulc=sulc)
        rh_coords = coords * np.array([-1.0, 1.0, 1.0])[: coords.shape[1]]
        rh = HemiMesh(coords=rh_coords, faces=faces[:, ::-1], sulc=sulc)
        out[name] = Mesh(lh=lh, rh=rh, surf=name, source="icosphere", flat=is_flat)
    xyz = np.concatenate([sphere, sphere * np.array([-1.0, 1.0, 1.0])])
    return out, xyz


def synthetic_maps(xyz: np.ndarray, n_layers: int = 8, n_lags: int = 17, n_points: int = 200, seed: int = 0):
    """Six smooth maps of sphere positions [V, 3] and click details."""
    rng = np.random.default_rng(seed)
    u = xyz / np.abs(xyz).max()
    back = np.clip(-u[:, 1], 0, 1)  # occipital = high
    score = 0.6 * back**2 + 0.05 * np.sin(9 * u[:, 2])
    nc = np.clip(score + 0.2, 0, 1)
    roi = np.clip(np.floor((back - 0.55) * 12), 0, 6).astype(np.int64)
    hier = np.clip(1 - back, 0, 1)
    w = np.exp(-((np.arange(n_layers)[None] / (n_layers - 1) - hier[:, None]) ** 2) / 0.05)
    xy = np.clip(np.stack([np.sin(3 * u[:, 0]), np.cos(3 * u[:, 2])], 1), -1, 1)
    lags = np.arange(n_lags)
    profile = score[:, None] * np.exp(-((lags[None] - 6) ** 2) / 8)
    pred = rng.normal(size=(xyz.shape[0], n_points)).astype(np.float32)
    names = ("none", "V1", "V2", "V3", "hV4", "LO", "PHC")
    maps = {"score": score, "noise ceiling": nc, "ROI": Categorical(roi, names), "layer": Layers(w),
            "space": Space(xy), "scale": scale_map(hier)}
    details = Details(lags=lags, lag_profile=profile, lag_low=profile - 0.05, lag_high=profile + 0.05,
                      predicted=pred, measured=pred * score[:, None] + rng.normal(size=pred.shape).astype(np.float32),
                      image=rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
    return maps, roi, details


def measure(name: str, mesh, maps, rois, roi_names, details, hemi=None, index=None, repeats: int = 3) -> dict:
    t0 = time.perf_counter()
    ex = explore(maps, hemi, index, mesh=mesh, rois=rois, roi_names=roi_names, details=details)
    explore_s = time.perf_counter() - t0
    bare = explore(maps, hemi, index, mesh=mesh, rois=rois, roi_names=roi_names)
    row = {"case": name, "units": ex.meta["n_units"], "mesh_vertices": sum(ex.meta["n_vertices"]),
           "explore_s": round(explore_s, 2), "html_mb": len(ex.html().encode()) / 1e6,
           "html_mb_without_details": len(bare.html().encode()) / 1e6,
           "details_units": int(ex.arrays["detail_units"].shape[0])}
    missing = browser_missing()
    if missing:
        row["browser"] = missing
        return row
    with tempfile.TemporaryDirectory() as tmp, headless_chromium() as driver:
        path = ex.save_html(Path(tmp) / "page.html")
        loads = [open_page(driver, path) for _ in range(repeats)]
        row["first_draw_ms"] = statistics.median(x["first_draw_ms"] for x in loads)
        row["first_draw_ms_all"] = [round(x["first_draw_ms"]) for x in loads]
        row["viewer_build_ms"] = statistics.median(x["build_ms"] for x in loads)
        for label, call in (("switch_map_ms", "setMap('layer')"), ("switch_surface_ms", "setSurface('flat')"),
                            ("hover_lookup_ms", "unitAt(300, 300)")):
            row[label] = driver.execute_script(
                f"const v = brainnetExplorer.instances[0], t = performance.now(); v.{call}; v.gl.finish();"
                "return performance.now() - t;")
        row["console_errors"] = console_errors(driver)
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=("fsaverage", "nsd-mini", "all"), default="all")
    ap.add_argument("--preset", default="tiny", help="nsd-mini preset (tiny, default)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    rows = []
    if args.case in ("fsaverage", "all"):
        mesh, xyz = fsaverage_standin()
        maps, roi, details = synthetic_maps(xyz)
        rows.append(measure("fsaverage (icosphere, 2 x 163842)", mesh, maps, roi, None, details, repeats=args.repeats))
    if args.case in ("nsd-mini", "all"):
        from brainnet.data import PreparedDataset
        from brainnet.data.mini import ensure_mini
        from brainnet.plotting import load_mesh

        ds = PreparedDataset(ensure_mini(preset=args.preset, progress=False).prepared)
        sub = ds.subject(ds.subjects[0])
        hemi, index = sub.vertices["hemi"], sub.vertices["index"]
        sphere = load_mesh(ds, "sphere")
        xyz = np.where((hemi == 0)[:, None], sphere.lh.coords[np.minimum(index, sphere.lh.n_vertices - 1)],
                       sphere.rh.coords[np.minimum(index, sphere.rh.n_vertices - 1)])
        maps, roi, details = synthetic_maps(xyz)
        rows.append(measure(f"nsd-mini {args.preset} ({sub.name})", ds, maps, roi, None, details, hemi, index,
                            repeats=args.repeats))
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
