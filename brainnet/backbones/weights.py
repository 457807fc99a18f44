"""Finding and loading weights without surprises: offline checks first, local files, clear errors."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from brainnet.errors import WeightsUnavailableError
from brainnet.net import network_available, offline_by_env  # noqa: F401  (re-exported)

from .base import RANDOM_WEIGHTS

log = logging.getLogger(__name__)

HOW_TO_PROVIDE = (
    "Provide weights without network access in one of these ways: "
    "(1) pass weights='/path/to/checkpoint.pt' (a state_dict saved with torch.save, loaded with "
    "weights_only=True); (2) put the file in the torch hub cache "
    "($TORCH_HOME/hub/checkpoints, now {hub}); (3) for Hugging Face hosted weights, fill the HF "
    "cache ($HF_HOME/hub) on a machine with network and copy it over."
)


def how_to_provide() -> str:
    """The standard advice text, with the current torch hub directory filled in."""
    return HOW_TO_PROVIDE.format(hub=torch_hub_checkpoints_dir())


def torch_hub_checkpoints_dir() -> Path:
    """Where torch.hub keeps downloaded checkpoints ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_cached_file(repo_id: str, filenames: tuple[str, ...]) -> str | None:
    """Path of the first of ``filenames`` already in the local Hugging Face cache, else None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with timm
        return None
    for fn in filenames:
        found = try_to_load_from_cache(repo_id, fn)
        if isinstance(found, str) and os.path.exists(found):
            return found
    return None


def require_download(what: str, host: str) -> None:
    """Raise :class:`WeightsUnavailableError` at once when ``what`` would need a download that cannot happen."""
    if not network_available(host):
        reason = "offline mode is set" if offline_by_env() else f"{host} cannot be reached"
        raise WeightsUnavailableError(f"{what} is not in any local cache and {reason}. " + how_to_provide())


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a checkpoint as a flat state_dict (``torch.load(weights_only=True)``; .safetensors too).

    Common wrappers ({"state_dict": ...}, {"model": ...}) are unwrapped.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsUnavailableError(f"weights file {p} does not exist. " + how_to_provide())
    log.debug("loading weights from %s", p)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(p))
    else:
        try:
            sd = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling refused or corrupt file
            raise WeightsUnavailableError(
                f"could not load {p} with torch.load(weights_only=True): {exc}. Save a plain state_dict "
                "(torch.save(model.state_dict(), path))."
            ) from exc
    for key in ("state_dict", "model", "module"):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsUnavailableError(f"{p} does not hold a state_dict (a mapping of names to tensors)")
    return dict(sd)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB chunks (``sha256sum`` gives the same)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_label(weights: str | os.PathLike | None, published: str | None) -> str:
    """``Backbone.weights_source`` of a built tower: "file:<sha256[:12]>" when a local checkpoint
    ``weights`` was loaded, else the ``published`` identity that was loaded, else "random"."""
    if weights is not None:
        return f"file:{file_sha256(weights)[:12]}"
    return published or RANDOM_WEIGHTS


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keep keys starting with ``prefix`` (prefix removed) if any do; else return ``sd`` unchanged."""
    if any(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return dict(sd)


def load_into(module: nn.Module, sd: Mapping[str, torch.Tensor], source: str,
              ignore_prefixes: tuple[str, ...] = ()) -> None:
    """``module.load_state_dict(sd)`` with a readable error naming missing / unexpected keys.

    Keys of ``sd`` starting with any of ``ignore_prefixes`` (e.g. a classifier head) are dropped first.
    """
    sd = {k: v for k, v in sd.items() if not k.startswith(ignore_prefixes)} if ignore_prefixes else dict(sd)
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shape = [f"{k}: {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
             for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or shape:
        raise WeightsUnavailableError(
            f"weights from {source} do not fit this architecture: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
            f"shape mismatches {shape[:5]}"
        )
    module.load_state_dict(sd, strict=True)
