"""Error types shared across brainnet."""

from __future__ import annotations

import os

#: Environment variable that asks for full tracebacks (command line and notebooks).
DEBUG_ENV = "BRAINNET_DEBUG"


def debug_requested() -> bool:
    """True when ``$BRAINNET_DEBUG`` is set to anything but empty or ``0``."""
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


class BrainnetError(Exception):
    """Base class of brainnet's own errors."""


class DataFormatError(BrainnetError, ValueError):
    """A data file is missing or does not have the expected format.

    The message names the file, what was expected and what was found.
    """

    def __init__(self, path, expected: str, found: str):
        self.path = str(path)
        self.expected = expected
        self.found = found
        super().__init__(f"{self.path}: expected {expected}, found {found}")


class WeightsUnavailableError(BrainnetError, RuntimeError):
    """Pretrained weights were asked for but cannot be obtained (no network, no local file)."""


class MissingInputError(BrainnetError, ValueError):
    """A prepared dataset lacks an input a consumer needs (e.g. behaviour or noise ceiling on a
    dataset prepared from the Algonauts 2023 release alone). The message names the dataset, the
    missing input, who needs it and how to get it."""


class LockedError(BrainnetError, RuntimeError):
    """Another process is writing to the same dataset, cache or run folder (see :mod:`brainnet.locks`).

    The message names the lock file and its holder (host, pid, what it does, since when).
    """

    def __init__(self, path, holder: str, advice: str = ""):
        self.path = str(path)
        self.holder = holder
        super().__init__(f"{self.path}: locked by {holder}{'; ' + advice if advice else ''}")


class DiskFullError(BrainnetError, OSError):
    """A file could not be allocated or written for lack of space (or a file-size limit).

    An ``OSError`` with the original ``errno``; the message names the file and the bytes asked for.
    """

    def __init__(self, path, errno: int, strerror: str, nbytes: int | None = None):
        want = f" ({nbytes} bytes)" if nbytes is not None else ""
        super().__init__(errno, f"{path}: cannot allocate{want}: {strerror}; free space and rerun "
                                "(finished work is kept)")
        self.path = str(path)

    def __str__(self) -> str:
        return self.strerror
