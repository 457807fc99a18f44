"""Config of the memory encoding model: :class:`MemConfig`, the ablation table's rows and the
behaviour-column switches (see :mod:`brainnet.models.mem` for the model itself)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from brainnet.data.layout import BEHAVIOUR_GROUPS, N_BEHAVIOUR

from .configs import SelectorConfig
from .mem_blocks import CONV_HEADS, GLOBAL_HEADS, GLOBAL_POOLS, TIME_EMBEDDINGS
from .readout import READOUT_INITS

ANSWER_COLUMNS: tuple[int, ...] = BEHAVIOUR_GROUPS["B"]
MEMORY_COLUMNS: tuple[int, ...] = BEHAVIOUR_GROUPS["M"]
TIME_COLUMNS: tuple[int, ...] = BEHAVIOUR_GROUPS["T"]
ABLATIONS: tuple[str, ...] = ("full", "no_time", "no_answer", "no_memory_c",
                              "no_memory_images", "baseline")

#: Keys of MemConfig dicts saved before backbone adaptation moved to the TrainConfig (read while off).
RETIRED_ADAPT_KEYS: tuple[str, ...] = ("lora_rank", "adaln_zero")


@dataclass(frozen=True)
class MemConfig(SelectorConfig):
    """Hyper-parameters and input switches of :class:`~brainnet.models.MemModel`.

    The fields of :class:`~brainnet.models.SelectorConfig` (token inputs ``in_channels`` (default
    four layers of 768), ``layer_names``, ``grid_size``; vertex encoding and selector MLPs;
    ``chunk_size``, ``readout_init_std``; layer-selector regulariser ``reg_weight`` = 1e-4, constant
    (``reg_decay_steps`` = 0)) plus:

    Attributes
    ----------
    width : int
        Channels of the conv heads (192 in the reference).
    conv_kernel, conv_blocks : kernel size and number of residual blocks per conv head.
    use_memory_images : bool
        Use the memory image vectors (T = -1 .. -n_memory_frames).
    n_memory_frames : int
        How many frames back (1 .. 32).
    memory_dim : int
        Size of one cached memory image vector.
    separate_t1 : bool
        T = -1 gets its own MLP path (``t1_dim``) instead of joining the frame stack.
    frame_dim, time_dim, memory_hidden, memory_out, t1_dim : memory branch sizes.
    t1_input_dim : int
        0: the T = -1 MLP reads the memory vector of slot T = -1 (``memory_dim``); > 0: it reads
        ``batch["t1_global"]`` (B, t1_input_dim) instead, the previous image's global token from a
        second backbone in the loop (:class:`~brainnet.models.BackboneInLoop` with ``t1_backbone``).
    use_answer, use_memory_c, use_time : bool
        Behaviour groups B (answer), M (memory), T (time).
    behaviour_hidden, behaviour_out : behaviour embedding sizes (``behaviour_out`` per
        passthrough slot).
    dropout : float
        Dropout in the behaviour and memory MLPs.
    readout_init_std : float or None
        1.0 here, not the fan-in default of the other models: the readout averages over its D inputs,
        so a useful prediction needs weights of order 1, and a fan-in start (about 0.05) leaves the
        image path behind. Measured on the nsd-mini acceptance run (24 epochs, subj01 heldout,
        trial-level): std 1.0 scored 52.7 (visual vertices 48.2), the fan-in start 40.9 (35.4); ridge 43.6.

    Variants (defaults keep the original model; the ``mem-algonauts2023`` training preset turns
    them to the Memory Encoding Model's choices, see docs/preset-mem-algonauts2023.md):

    conv_head : "project" | "input_width" (see :data:`~brainnet.models.mem_blocks.CONV_HEADS`).
    global_head : "linear" | "mlp"; global_pool : "token" | "maxavg_nonlast" (globals of the
        non-last layers pooled from their local maps, which needs maps at full patch resolution).
    time_embedding : "learned" | "sinusoidal_subject" (memory frames' slot embedding).
    per_subject_selectors : one retina mapper and layer selector per subject (else shared).
    selector_bias : biases in the selector MLPs; selector_init : "zero" (last layer zero: every
        vertex starts at the centre with uniform layer weights) | "random" (PyTorch default).
    pe_min_period, pe_max_period, pe_gap : vertex encoding periods (steps) and the space between
        the hemispheres (fraction of the sphere diameter), see :mod:`brainnet.models.posenc`.
    readout_init : "normal" (``readout_init_std``) | "linear" (see
        :class:`~brainnet.models.readout.VertexReadout`).
    """

    in_channels: tuple[int, ...] = (768,) * 4
    reg_weight: float = 1e-4
    reg_decay_steps: int = 0
    readout_init_std: float | None = 1.0
    width: int = 192
    conv_kernel: int = 3
    conv_blocks: int = 2
    use_memory_images: bool = True
    n_memory_frames: int = 32
    memory_dim: int = 1024
    separate_t1: bool = True
    frame_dim: int = 64
    time_dim: int = 16
    memory_hidden: int = 256
    memory_out: int = 64
    t1_dim: int = 64
    t1_input_dim: int = 0
    use_answer: bool = True
    use_memory_c: bool = True
    use_time: bool = True
    behaviour_hidden: int = 64
    behaviour_out: int = 32
    dropout: float = 0.1
    conv_head: str = "project"
    global_head: str = "linear"
    global_pool: str = "token"
    time_embedding: str = "learned"
    per_subject_selectors: bool = False
    selector_bias: bool = False
    selector_init: str = "zero"
    pe_min_period: float = 2.0
    pe_max_period: float = 200.0
    pe_gap: float = 0.1
    readout_init: str = "normal"

    def __post_init__(self):
        super().__post_init__()
        choices = (("conv_head", CONV_HEADS), ("global_head", GLOBAL_HEADS), ("global_pool", GLOBAL_POOLS),
                   ("time_embedding", TIME_EMBEDDINGS), ("selector_init", ("zero", "random")),
                   ("readout_init", READOUT_INITS))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 0 < self.pe_min_period <= self.pe_max_period or self.pe_gap < 0:
            raise ValueError("need 0 < pe_min_period <= pe_max_period and pe_gap >= 0")
        if not 1 <= self.n_memory_frames <= 32:
            raise ValueError(f"n_memory_frames must be in 1..32, got {self.n_memory_frames}")
        if self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd and >= 1, got {self.conv_kernel}")
        sizes = (self.width, self.memory_dim, self.frame_dim, self.time_dim, self.memory_hidden,
                 self.memory_out, self.t1_dim, self.behaviour_hidden, self.behaviour_out)
        if min(sizes) < 1 or self.conv_blocks < 0:
            raise ValueError("layer sizes must be >= 1 and block counts >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.t1_input_dim < 0:
            raise ValueError(f"t1_input_dim must be >= 0 (0 = the memory vector), got {self.t1_input_dim}")

    @classmethod
    def upgrade_dict(cls, data: dict) -> dict:
        """Drop :data:`RETIRED_ADAPT_KEYS` when off (configs saved when they were fields here;
        backbone adaptation now lives on the TrainConfig); a retired key that is on stays and is
        refused as unknown."""
        return {k: v for k, v in data.items() if not (k in RETIRED_ADAPT_KEYS and not v)}

    @property
    def use_behaviour(self) -> bool:
        """True when any behaviour group is on."""
        return self.use_answer or self.use_memory_c or self.use_time

    @property
    def data_inputs(self) -> dict[str, str]:
        """Prepared-dataset inputs beyond images and fMRI that this config reads: name (of
        :attr:`brainnet.data.PreparedDataset.inputs`) -> the switch that reads it. Empty for the
        image-only configuration (ablation ``"baseline"``)."""
        out = {}
        if self.use_memory_images:
            out["memory"] = "memory images (use_memory_images)"
        groups = [n for n, on in (("use_answer", self.use_answer), ("use_memory_c", self.use_memory_c),
                                  ("use_time", self.use_time)) if on]
        if groups:
            out["behaviour"] = f"behaviour ({', '.join(groups)})"
        return out

    @property
    def n_stack_frames(self) -> int:
        """Frames in the flattened memory stack (0 when memory images are off)."""
        if not self.use_memory_images:
            return 0
        return self.n_memory_frames - 1 if self.separate_t1 else self.n_memory_frames

    @property
    def has_t1_path(self) -> bool:
        """True when T = -1 has its own MLP path (memory images on and ``separate_t1``)."""
        return self.use_memory_images and self.separate_t1

    @property
    def readout_dim(self) -> int:
        """Size of the concatenated per-vertex feature fed to the readout."""
        d = self.width
        if self.has_t1_path:
            d += self.t1_dim
        if self.n_stack_frames > 0:
            d += self.memory_out
        if self.use_behaviour:
            d += 2 * self.behaviour_out
        return d


def ablation_config(name: str, base: MemConfig | None = None) -> MemConfig:
    """Config of one row of the ablation table.

    Parameters
    ----------
    name : one of ``ABLATIONS``: "full", "no_time" (w/o T), "no_answer" (w/o B),
        "no_memory_c" (w/o M), "no_memory_images", "baseline" (current image only).
    base : MemConfig, optional
        Config to start from (default ``MemConfig()``); its switches are overridden.
    """
    base = MemConfig() if base is None else base
    on = dict(use_memory_images=True, use_answer=True, use_memory_c=True, use_time=True)
    changes = {
        "full": {},
        "no_time": {"use_time": False},
        "no_answer": {"use_answer": False},
        "no_memory_c": {"use_memory_c": False},
        "no_memory_images": {"use_memory_images": False},
        "baseline": {k: False for k in on},
    }
    if name not in changes:
        raise ValueError(f"unknown ablation {name!r}; choose from {ABLATIONS}")
    return replace(base, **{**on, **changes[name]})


def behaviour_mask(config: MemConfig) -> torch.Tensor:
    """Float mask (35,): 1 for the columns of the behaviour groups that are on, else 0."""
    mask = torch.zeros(N_BEHAVIOUR)
    for flag, cols in ((config.use_answer, ANSWER_COLUMNS), (config.use_memory_c, MEMORY_COLUMNS),
                       (config.use_time, TIME_COLUMNS)):
        if flag:
            mask[list(cols)] = 1.0
    return mask
