"""The prepare pipeline: NSD + Algonauts 2023 trees -> one prepared dataset directory."""

from brainnet.data.prep.config import PrepareConfig
from brainnet.data.prep.pipeline import is_finished, prepare

__all__ = ["PrepareConfig", "is_finished", "prepare"]
