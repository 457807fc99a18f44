"""The saved explorer page in the system's headless Chromium (network off): it draws, switches maps, and its
hover / click panels show the unit under the mouse with the values given in Python."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.bench_explorer import fsaverage_standin, synthetic_maps
from brainnet.explorer import explore
from brainnet.explorer.browser import browser_missing, canvas_pixels, console_errors, headless_chromium, open_page

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")

ROI_NAMES = ("none", "V1", "V2", "V3", "hV4", "LO", "PHC")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """(driver, maps, units' hemi, index) with the page of a 2 x 2562-vertex mesh open; two voxel units."""
    mesh, xyz = fsaverage_standin(4)
    maps, roi, details = synthetic_maps(xyz, n_layers=6, n_lags=8, n_points=40)
    n = xyz.shape[0]
    hemi = np.repeat([0, 1], n // 2)
    index = np.concatenate([np.arange(n // 2)] * 2)
    hemi[[7, n - 3]] = 2
    ex = explore(maps, hemi, index, mesh=mesh, rois=roi, roi_names=ROI_NAMES, details=details, max_detail_units=n)
    path = ex.save_html(tmp_path_factory.mktemp("explorer") / "page.html")
    with headless_chromium() as driver:
        open_page(driver, path)
        yield driver, maps, hemi, index, roi


def _run(driver, call):
    return driver.execute_script(f"return brainnetExplorer.instances[0].{call};")


def test_page_draws_without_errors_and_map_switch_changes_pixels(page):
    driver, *_ = page
    assert console_errors(driver) == []
    first = canvas_pixels(driver).astype(float)
    assert first.reshape(-1, 3).var(axis=0).sum() > 500  # a drawn brain, not a blank canvas
    _run(driver, "setMap('space')")
    second = canvas_pixels(driver).astype(float)
    assert np.abs(second - first).mean() > 2
    _run(driver, "setSurface('flat')")
    flat = canvas_pixels(driver).astype(float)
    assert flat.reshape(-1, 3).var(axis=0).sum() > 500 and np.abs(flat - second).mean() > 2
    _run(driver, "setSurface('inflated')")
    _run(driver, "setMap('score')")
    assert console_errors(driver) == []


def test_hover_and_click_show_the_unit_and_its_values(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver, maps, hemi, index, roi = page
    # a visible unit near the middle of the left hemisphere, found through the page's API
    unit = driver.execute_script(
        "const v = brainnetExplorer.instances[0]; let best = -1, bd = 1e9;"
        "const r = v.canvas.getBoundingClientRect(), cx = r.left + r.width / 4, cy = r.top + r.height / 2;"
        "for (let u = 0; u < v.meta.n_units; u += 7) { const s = v.screenOf(u);"
        "  if (s && s.visible) { const d = Math.hypot(s.x - cx, s.y - cy); if (d < bd) { bd = d; best = u; } } }"
        "return best;")
    assert unit >= 0 and hemi[unit] == 0
    pos = _run(driver, f"screenOf({unit})")
    canvas = driver.find_element(By.CSS_SELECTOR, ".bn-stage canvas")
    rect = canvas.rect
    ActionChains(driver).move_to_element_with_offset(
        canvas, int(pos["x"] - rect["x"] - rect["width"] / 2), int(pos["y"] - rect["y"] - rect["height"] / 2)
    ).perform()
    hover = driver.find_element(By.CSS_SELECTOR, "[data-role=hover]")
    assert hover.find_element(By.CSS_SELECTOR, "tr[data-unit]").get_attribute("data-unit") == str(unit)
    assert f"lh vertex {index[unit]}" in hover.text and ROI_NAMES[roi[unit]] in hover.text
    meta = {m["name"]: m for m in driver.execute_script("return brainnetExplorer.instances[0].meta.maps;")}
    for name, given in (("score", [maps["score"][unit]]), ("space", maps["space"].xy[unit])):
        shown = json.loads(hover.find_element(By.CSS_SELECTOR, f"tr[data-map='{name}']").get_attribute("data-values"))
        assert np.all(np.abs(np.array(shown) - given) <= np.array(meta[name]["step"]) / 2 + 1e-9), name
    ActionChains(driver).click().perform()
    detail = driver.find_element(By.CSS_SELECTOR, "[data-role=detail]")
    assert f"unit {unit}" in detail.text and "layer weights" in detail.text and "lag profile" in detail.text
    assert "predicted vs measured" in detail.text and "not stored" not in detail.text
    weights = json.loads(detail.find_element(By.CSS_SELECTOR, "tr[data-map='layer']").get_attribute("data-values"))
    w = maps["layer"].weights[unit] / maps["layer"].weights[unit].sum()
    assert np.allclose(weights, w, atol=meta["layer"]["step"][0] / 2 + 1e-9)
    assert len(detail.find_elements(By.TAG_NAME, "canvas")) == 4  # bars, RF on the image, lag profile, scatter
    assert console_errors(driver) == []


def test_voxel_units_are_listed_and_selectable(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver, maps, hemi, *_ = page
    voxels = np.flatnonzero(hemi == 2)
    box = Select(driver.find_element(By.CSS_SELECTOR, "[data-role=voxels]"))
    assert [int(o.get_attribute("value")) for o in box.options] == voxels.tolist()
    box.select_by_value(str(voxels[1]))
    detail = driver.find_element(By.CSS_SELECTOR, "[data-role=detail]")
    assert f"unit {voxels[1]}" in detail.text and "voxel (no surface position)" in detail.text
    shown = json.loads(detail.find_element(By.CSS_SELECTOR, "tr[data-map='score']").get_attribute("data-values"))
    assert shown[0] == pytest.approx(maps["score"][voxels[1]], abs=1e-4)
