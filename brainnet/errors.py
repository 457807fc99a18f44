"""Error types shared across brainnet."""

from __future__ import annotations


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
