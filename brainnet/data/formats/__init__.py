"""Readers of the external formats: the NSD tree (:mod:`.nsd`) and the Algonauts 2023 release
(:mod:`.algonauts`). Each reader raises :class:`brainnet.errors.DataFormatError` naming the file."""

from brainnet.data.formats import algonauts, nsd

__all__ = ["algonauts", "nsd"]
