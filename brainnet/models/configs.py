"""Config dataclasses of the models: the one dict round-trip and the shared selector fields.

* :class:`DictConfig`: ``to_dict()`` / ``from_dict()`` for any dataclass config (saved with every
  run as JSON and in checkpoints). Subclasses read older saved dicts by overriding
  :meth:`DictConfig.upgrade_dict`.
* :class:`SelectorConfig`: the fields every model that maps backbone tokens onto cortex through
  per-vertex selectors shares (token inputs, vertex encoding, selector MLPs, chunking, readout
  init, selector regulariser). :class:`~brainnet.models.FactorTopyConfig` and
  :class:`~brainnet.models.MemConfig` extend it, so their saved dicts stay flat: dicts written
  before this class existed load unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T", bound="DictConfig")


class DictConfig:
    """Mixin for dataclass configs: ``to_dict()`` (JSON-friendly) and ``from_dict()``.

    Sequence fields are stored as lists and restored as tuples (configs hold tuples so that
    they stay immutable and hashable).
    """

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (tuples become lists)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def upgrade_dict(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Turn a dict saved by an older version into the current fields (default: unchanged).

        Override to drop retired keys or rename fields; called by :meth:`from_dict` first."""
        return data

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        """Build a config from :meth:`to_dict` output (or an older one, see :meth:`upgrade_dict`).

        Lists become tuples; unknown keys raise ``ValueError`` naming them."""
        data = cls.upgrade_dict(dict(data))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown config keys {unknown}; known: {sorted(names)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)


@dataclass(frozen=True)
class SelectorConfig(DictConfig):
    """Fields shared by the token-to-cortex models (FactorTopy, the memory model).

    Attributes
    ----------
    in_channels : tuple of int
        Channels C_l of each backbone layer (local and global tokens), in network order.
    layer_names : tuple of str
        Keys of the layers when tokens come as dicts; empty = use the dict's order.
    grid_size : int or None
        Local maps are resized to ``grid_size x grid_size`` (None: used as given).
    n_freqs, span : vertex encoding (see :mod:`brainnet.models.posenc`).
    sphere_radius : float or None
        Fixed sphere radius for the encoding (None: the largest vertex norm over subjects).
    mlp_hidden, mlp_layers : width and number of hidden layers of the selector MLPs.
    jitter : float
        Std of the training-time noise on retina positions (0: none).
    align_corners : bool
        ``grid_sample`` convention for positions (False: -1 / +1 are the image edges).
    chunk_size : int or None
        Vertices per chunk in the forward pass (None: all at once).
    readout_init_std : float or None
        Std of the normal readout weight initialisation; None (default): fan-in scaled
        ``1 / sqrt(3 D)`` (:func:`brainnet.models.readout.default_init_std`, the std of the references'
        ``nn.Linear`` init). Saved configs of older runs hold 1.0, the former default (a start so
        large that short runs give salt-and-pepper channel maps).
    reg_weight, reg_decay_steps : selector regulariser weight and its linear decay length
        (constant weight when ``reg_decay_steps <= 0``).
    """

    in_channels: tuple[int, ...] = (768,) * 12
    layer_names: tuple[str, ...] = ()
    grid_size: int | None = 8
    n_freqs: int = 32
    span: float = 100.0
    sphere_radius: float | None = None
    mlp_hidden: int = 128
    mlp_layers: int = 2
    jitter: float = 0.0
    align_corners: bool = False
    chunk_size: int | None = 25600
    readout_init_std: float | None = None
    reg_weight: float = 0.1
    reg_decay_steps: int = 2000

    def __post_init__(self):
        if not self.in_channels or min(self.in_channels) < 1:
            raise ValueError(f"in_channels must be a non-empty tuple of positive ints, got {self.in_channels}")
        if self.layer_names and len(self.layer_names) != len(self.in_channels):
            raise ValueError("layer_names and in_channels must have the same length")
        if self.n_freqs < 1 or self.mlp_hidden < 1 or self.mlp_layers < 0:
            raise ValueError("n_freqs, mlp_hidden must be >= 1 and mlp_layers >= 0")
        if self.grid_size is not None and self.grid_size < 1:
            raise ValueError(f"grid_size must be >= 1 or None, got {self.grid_size}")
        if self.jitter < 0:
            raise ValueError(f"jitter must be >= 0, got {self.jitter}")

    @property
    def n_layers(self) -> int:
        return len(self.in_channels)

    @property
    def selector(self) -> SelectorConfig:
        """The shared fields alone, as a :class:`SelectorConfig`."""
        names = {f.name for f in dataclasses.fields(SelectorConfig)}
        return SelectorConfig(**{k: getattr(self, k) for k in names})
