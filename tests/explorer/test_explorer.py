"""brainnet.explorer without a browser: quantisation, the payload, ROI borders, detail units, the widget's state."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from benchmarks.bench_explorer import fsaverage_standin, synthetic_maps
from brainnet.explorer import Details, Scalar, dequantise, explore, quantise
from brainnet.explorer.maps import Categorical, Layers, Space, as_map


@pytest.fixture(scope="module")
def small():
    mesh, xyz = fsaverage_standin(3)  # 642 vertices per hemisphere
    maps, roi, details = synthetic_maps(xyz, n_layers=5, n_lags=6, n_points=30)
    return mesh, xyz, maps, roi, details


def _array(ex_or_state, key, meta):
    spec = meta["buffers"][key]
    raw = zlib.decompress(ex_or_state[key])
    return np.frombuffer(raw, dtype=spec["dtype"]).reshape(spec["shape"])


def test_quantise_round_trip_within_half_a_step():
    v = np.array([0.1, -0.3, np.nan, 2.5, 0.0])
    for bits in (8, 16):
        codes, lo, step = quantise(v, bits)
        back = dequantise(codes, lo, step)
        assert np.isnan(back[2]) and codes[2] == 2**bits - 1
        ok = ~np.isnan(v)
        assert np.all(np.abs(back[ok] - v[ok]) <= step / 2 + 1e-12)
        assert step == pytest.approx(2.8 / (2**bits - 2))


def test_as_map_tells_kinds_and_rejects_ambiguous_shapes():
    assert isinstance(as_map(np.zeros(4)), Scalar)
    assert isinstance(as_map(np.zeros(4, dtype=int)), Categorical)
    assert isinstance(as_map(np.zeros((4, 2))), Space)
    assert isinstance(as_map(np.ones((4, 3))), Layers)
    with pytest.raises(ValueError, match="cannot tell"):
        as_map(np.zeros((4, 2, 2)))


def test_widget_state_holds_the_arrays_passed_in(small):
    """The anywidget model state (what JupyterLab receives) decodes to the maps, units and mesh given."""
    from brainnet.explorer.widget import ExplorerWidget

    mesh, xyz, maps, roi, details = small
    n = xyz.shape[0]
    hemi = np.repeat([0, 1], n // 2)
    index = np.concatenate([np.arange(n // 2)] * 2)
    hemi[[5, 700]] = 2  # two voxel units
    ex = explore(maps, hemi, index, mesh=mesh, rois=roi, roi_names=None, details=details, max_detail_units=40)
    state = ExplorerWidget(ex).get_state()["data"]
    meta, bufs = state["meta"], state["buffers"]
    assert meta["n_units"] == n and [m["name"] for m in meta["maps"]] == list(maps)
    assert np.array_equal(_array(bufs, meta["unit_hemi"], meta), hemi)
    assert np.array_equal(_array(bufs, meta["unit_index"], meta)[hemi < 2], index[hemi < 2])
    given = {"score": maps["score"][:, None], "noise ceiling": maps["noise ceiling"][:, None],
             "layer": maps["layer"].weights / maps["layer"].weights.sum(1, keepdims=True),
             "space": maps["space"].xy, "scale": maps["scale"].values[:, None]}
    for m in meta["maps"]:
        codes = _array(bufs, m["values"], meta)
        if m["kind"] == "categorical":
            assert np.array_equal(codes[:, 0], maps["ROI"].codes)
            continue
        back = np.stack([dequantise(codes[:, c], m["lo"][c], m["step"][c]) for c in range(codes.shape[1])], 1)
        assert np.all(np.abs(back - given[m["name"]]) <= np.array(m["step"]) / 2 + 1e-9), m["name"]
    # the mesh: coords within half a quantisation step, faces exact
    s = meta["surfaces"][0]
    coords = _array(bufs, s["hemis"][1]["coords"], meta) * np.array(s["step"]) + np.array(s["lo"])
    assert np.all(np.abs(coords - mesh["inflated"].rh.coords) <= np.array(s["step"]) / 2 + 1e-9)
    faces = np.cumsum(_array(bufs, s["hemis"][1]["faces"], meta)).reshape(-1, 3)
    assert np.array_equal(faces, mesh["inflated"].rh.faces)
    # sphere shares the inflated triangles; the flat cap has its own
    assert meta["surfaces"][2]["hemis"][0]["faces"] == s["hemis"][0]["faces"]
    assert meta["surfaces"][1]["hemis"][0]["faces"] != s["hemis"][0]["faces"]
    # click details: the 40 best units by score, their lag profiles
    chosen = _array(bufs, meta["details"]["units"], meta)
    assert np.array_equal(np.sort(chosen), np.sort(np.argsort(-maps["score"], kind="stable")[:40]))
    lag = meta["details"]["lag"]
    prof = dequantise(_array(bufs, lag["codes"], meta), lag["lo"], lag["step"])
    assert np.allclose(prof[:, 0], details.lag_profile[chosen], atol=lag["step"] / 2 + 1e-9)


def test_roi_borders_are_the_vertices_next_to_another_label(small):
    mesh, xyz, maps, roi, _ = small
    ex = explore({"score": maps["score"]}, mesh=mesh, rois=roi, roi_names=[f"r{i}" for i in range(7)])
    faces, n = mesh["inflated"].lh.faces, mesh["inflated"].lh.n_vertices
    label = roi[:n]
    expected = np.zeros(n, dtype=bool)
    for a, b in ((0, 1), (1, 2), (2, 0)):
        for x, y in ((a, b), (b, a)):
            d = (label[faces[:, x]] != label[faces[:, y]]) & (label[faces[:, x]] > 0)
            expected[faces[d, x]] = True
    assert np.array_equal(ex.arrays["roi_border.lh"].astype(bool), expected) and expected.any()
    names = {a["name"] for a in ex.meta["roi_anchors"]}
    assert names == {f"r{i}" for i in np.unique(roi) if i > 0}
    anchor = next(a for a in ex.meta["roi_anchors"] if a["hemi"] == 0)
    assert roi[anchor["vertex"]] == int(anchor["name"][1:])


def test_explore_rejects_mismatched_maps_and_units(small):
    mesh, xyz, maps, _, _ = small
    with pytest.raises(ValueError, match="different numbers of units"):
        explore({"a": np.zeros(10), "b": np.zeros(11)}, mesh=mesh)
    with pytest.raises(ValueError, match="full mesh"):
        explore({"a": np.zeros(10)}, mesh=mesh)
    with pytest.raises(ValueError, match="lag_profile"):
        explore({"a": maps["score"]}, mesh=mesh, details=Details(lag_profile=np.zeros((3, 4))))


def test_page_is_self_contained(small, tmp_path):
    mesh, xyz, maps, roi, details = small
    html = explore(maps, mesh=mesh, rois=roi, details=details).save_html(tmp_path / "e.html").read_text()
    assert "<script src" not in html and "http://" not in html and "https://" not in html
    assert html.count("brainnetExplorer.mountPage") == 1


def test_saved_inputs_load_back_and_gather_prefixes_maps(small, tmp_path):
    from brainnet.explorer.collect import gather, load_inputs, save_inputs

    mesh, xyz, maps, roi, details = small
    names = [f"r{i}" for i in range(7)]
    a = save_inputs(tmp_path / "a.npz", maps, rois=roi, roi_names=names, details=details)
    back = load_inputs(a)
    assert list(back["maps"]) == list(maps) and back["roi_names"] == names
    assert np.array_equal(back["maps"]["layer"].weights, maps["layer"].weights)
    assert back["maps"]["scale"].cmap == maps["scale"].cmap and back["maps"]["ROI"].names == maps["ROI"].names
    np.testing.assert_allclose(back["details"].lag_profile, details.lag_profile, rtol=1e-6)  # saved as float32
    # gathered on fsaverage5 (a mesh source a file can name): 50 units, maps prefixed, details merged
    hemi, index = np.repeat([0, 1], 25), np.tile(np.arange(0, 2500, 100), 2)
    sel = {"score": maps["score"][:50], "layer": Layers(maps["layer"].weights[:50])}
    p02 = save_inputs(tmp_path / "02.npz", sel, hemi, index, mesh="fsaverage5", rois=roi[:50], roi_names=names,
                      details=Details(lag_profile=details.lag_profile[:50]))
    p04 = save_inputs(tmp_path / "04.npz", {"score": maps["score"][:50] * 2}, hemi, index, mesh="fsaverage5",
                      details=Details(image=details.image))
    ex = gather({"02": p02, "04": p04})
    assert [m["name"] for m in ex.meta["maps"]] == ["02: score", "02: layer", "04: score"]
    assert "lag" in ex.meta["details"] and "image" in ex.meta["details"] and ex.meta["roi"]["names"] == names
    bad = save_inputs(tmp_path / "c.npz", {"s": maps["score"][:50]}, hemi, index + 50, mesh="fsaverage5")
    with pytest.raises(ValueError, match="units differ"):
        gather({"02": p02, "c": bad})
    assert [m["name"] for m in gather({"02": p02, "c": bad}, strict=False).meta["maps"]] == ["02: score", "02: layer"]
    # units matched by (hemi, index): a later input with the units reversed plus two voxels (as notebook 03 on fship)
    h03, i03 = np.r_[hemi[::-1], 2, 2], np.r_[index[::-1], 7, 9]
    p03 = save_inputs(tmp_path / "03.npz", {"lag": np.arange(52.0)}, h03, i03, mesh="fsaverage5",
                      rois=np.r_[roi[:50][::-1], 1, 1], roi_names=names,
                      details=Details(lag_profile=np.arange(52.0 * 3).reshape(52, 3)))
    ex = gather({"02": p02, "03": p03})
    uh, ui = (_array(ex.buffers, k, ex.meta) for k in ("unit_hemi", "unit_index"))
    assert ex.meta["n_units"] == 52 and uh.tolist() == h03.tolist() and ui[:50].tolist() == i03[:50].tolist()
    score = {m["name"]: m for m in ex.meta["maps"]}["02: score"]
    shown = dequantise(_array(ex.buffers, score["values"], ex.meta)[:, 0], score["lo"][0], score["step"][0])
    assert np.isnan(shown[50:]).all() and np.allclose(shown[:50], maps["score"][:50][::-1], atol=score["step"][0])


def test_details_are_kept_for_the_best_units_with_details(small, tmp_path):
    """limit_details (what save_inputs stores) and the page keep the same units: the best by the first scalar
    map among those with per-unit rows (NaN rows = none), at most max_points points each."""
    from brainnet.explorer.collect import load_inputs, save_inputs
    from brainnet.explorer.core import limit_details

    mesh, xyz, maps, roi, details = small
    score = maps["score"]
    pred, meas = (np.array(a, dtype=np.float64) for a in (details.predicted, details.measured))
    best = np.argsort(-score)[:3]
    pred[best[0]] = meas[best[0]] = np.nan  # the best unit has no scatter stored
    det = Details(predicted=pred, measured=meas)
    kept = limit_details(det, maps, max_units=10, max_points=7)
    stored = np.flatnonzero(np.isfinite(kept.predicted).any(axis=1))
    expected = np.sort(np.argsort(-np.where(np.isnan(pred).all(axis=1), -np.inf, score))[:10])
    assert kept.predicted.shape == (score.size, 7) and kept.predicted.dtype == np.float32
    assert stored.tolist() == expected.tolist() and best[0] not in stored and best[1] in stored
    ex = explore(maps, mesh=mesh, details=det, max_detail_units=10, max_points=7)
    assert _array(ex.buffers, "detail_units", ex.meta).tolist() == expected.tolist()
    assert ex.meta["buffers"]["scatter.predicted"]["shape"] == [10, 7]
    back = load_inputs(save_inputs(tmp_path / "d.npz", maps, details=det))
    assert back["details"].predicted.dtype == np.float32 and np.isnan(back["details"].predicted[best[0]]).all()
