"""Is the network there? The offline switches and a quick reachability probe (no heavy imports).

Used before anything that would download (weights, nilearn's fsaverage meshes) so that an offline
run fails fast with advice instead of hanging.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

log = logging.getLogger(__name__)

#: Environment switches that mean "do not touch the network" (any of "1", "true", "yes", "on").
OFFLINE_VARS: tuple[str, ...] = ("BRAINNET_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline_by_env() -> bool:
    """True when an offline switch (BRAINNET_OFFLINE, HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE) is set."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARS)


def network_available(host: str = "huggingface.co", port: int = 443, timeout: float = 1.5) -> bool:
    """Quick reachability probe; never blocks longer than about ``timeout`` seconds.

    DNS lookups have no timeout of their own, so the probe runs in a daemon thread.
    """
    if offline_by_env():
        return False
    result: list[bool] = []

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    log.debug("network probe %s:%d: %s", host, port, "reachable" if result and result[0] else "unreachable")
    return bool(result and result[0])
