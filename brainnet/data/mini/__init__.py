"""nsd-mini: a synthetic NSD + Algonauts 2023 tree in the real formats, with planted truth."""

from brainnet.data.mini.config import MiniNSDConfig, MiniNSDPaths
from brainnet.data.mini.generate import make_mini_nsd
from brainnet.data.mini.home import MiniData, ensure_mini

__all__ = ["MiniData", "MiniNSDConfig", "MiniNSDPaths", "ensure_mini", "make_mini_nsd"]
