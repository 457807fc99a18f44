"""Open explorer pages in the system's headless Chromium (tests, benchmarks): Debian's ``chromium`` and
``chromium-driver`` through selenium, never a browser that selenium would download.

WebGL runs on SwiftShader (software) there. The network is cut twice: a proxy that does not exist and
the DevTools "offline" emulation, so a page that fetched anything would fail (and log an error).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

#: where the Debian packages put the browser and its driver
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver",)
MISSING_ADVICE = ("headless Chromium missing: install Debian's packages with `apt-get update && apt-get install -y "
                  "chromium chromium-driver` (.ci/run does) and `pip install selenium` (brainnet[test])")


def _first(paths, name: str) -> str | None:
    found = next((p for p in paths if os.access(p, os.X_OK)), None)
    return found or shutil.which(name)


def browser_missing() -> str | None:
    """None when selenium, chromium and chromedriver are all there, else the advice to get them."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return MISSING_ADVICE
    if _first(CHROMIUM, "chromium") is None or _first(CHROMEDRIVER, "chromedriver") is None:
        return MISSING_ADVICE
    return None


@contextlib.contextmanager
def headless_chromium(width: int = 1280, height: int = 820):
    """A selenium Chrome driver on the system Chromium, network off, console logged; quits on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = browser_missing()
    if missing:
        raise RuntimeError(missing)
    opts = webdriver.ChromeOptions()
    opts.binary_location = _first(CHROMIUM, "chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-swiftshader",
                "--use-angle=swiftshader", f"--window-size={width},{height}", "--proxy-server=http://127.0.0.1:9",
                "--proxy-bypass-list=<-loopback>", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=_first(CHROMEDRIVER, "chromedriver")))
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
        yield driver
    finally:
        driver.quit()


def open_page(driver, path: str | os.PathLike, timeout: float = 60.0) -> dict:
    """Load a saved explorer page and wait for its first frame.

    Returns {"first_draw_ms": ms from navigation start to the first frame finished (gl.finish),
    "build_ms": ms the viewer took from its data to that frame, "wall_s": seconds seen from Python}.
    """
    t0 = time.perf_counter()
    driver.get(Path(path).resolve().as_uri())
    deadline = time.time() + timeout
    while True:
        state = driver.execute_script(
            "const b = window.brainnetExplorer; if (!b) return 'no script';"
            "const v = b.instances[0]; if (v) return {first: v.firstDrawMs, build: v.buildMs};"
            "const e = document.querySelector('.bn-error'); return e ? 'error: ' + e.textContent : null;")
        if isinstance(state, dict):
            return {"first_draw_ms": state["first"], "build_ms": state["build"], "wall_s": time.perf_counter() - t0}
        if isinstance(state, str) and state.startswith("error"):
            raise RuntimeError(state)
        if time.time() > deadline:
            raise TimeoutError(f"explorer page {path} did not draw within {timeout} s ({state})")
        time.sleep(0.05)


def console_errors(driver) -> list[str]:
    """Browser console messages of level SEVERE since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def canvas_pixels(driver):
    """The WebGL canvas as an RGB uint8 array [H, W, 3] (read through toDataURL: the drawing buffer is kept)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    url = driver.execute_script("return document.querySelector('.bn-stage canvas').toDataURL('image/png');")
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    return np.asarray(img)
