"""Memory encoding model: current image, memory images, behaviour and time -> cortex.

Inputs of one batch (one subject per batch; B trials):

* ``local`` / ``global``: per-layer tokens of the current image, (B, C_l, h, w) / (B, C_l).
* ``memory``: (B, F, D_mem) cached vectors of the images 1..F slots back (column k - 1 is
  T = -k), e.g. from :func:`gather_memory`; ``memory_valid``: (B, F) bool, False for a blank
  slot or one before the run start. Needed when ``use_memory_images``.
* ``behaviour``: (B, 35) behaviour features of the current trial (groups: answer B = 0..7 and
  21..34, memory M = 8..18, time T = 19..20). Needed when any behaviour group is on.
* ``memory_behaviour`` (optional): (B, F, 35) behaviour of the trial shown k slots back
  (zeros when unknown); absent = zeros.
* ``subject``: str.

Branches (each switchable by :class:`MemConfig`):

* current image: per layer a conv head to ``width`` channels (1x1 conv, then residual blocks
  of conv + channel LayerNorm + SiLU; or, ``conv_head="input_width"``, the blocks at the backbone
  width then a conv to ``width``) and a linear map (or MLP) of the global token (or, with
  ``global_pool="maxavg_nonlast"``, of the non-last layers' mean + max pooled maps); each vertex
  samples every layer's map at its :class:`RetinaMapper` position, and :class:`LayerSelector`
  weights mix the sampled features and the global features; the two mixes are summed ->
  (B, n, width). Selectors are shared by the subjects unless ``per_subject_selectors``.
* T = -1 (``separate_t1``): the previous image's vector -> MLP -> ``t1_dim`` (zeros if blank);
  the vector is the memory vector of slot T = -1, or, with ``t1_input_dim > 0``,
  ``batch["t1_global"]`` (B, t1_input_dim): the previous image through its own backbone in the loop.
* memory frames T = -2..-F (or -1..-F without ``separate_t1``): each frame concat(vector,
  the frame's behaviour embedding (or zeros), time embedding of its slot) -> MLP ->
  ``frame_dim``; blank frames are zero; frames flattened -> subject-specific linear ->
  ``memory_hidden`` -> MLP -> ``memory_out``.
* behaviour: columns of switched-off groups are zeroed; subject-specific linear + shared MLP
  with dropout -> ``behaviour_out``; embeddings of T = 0 and T = -1 are passed to the readout.
* readout: per vertex, a linear map of concat[current | T-1 | memory | behaviour T=0 | T=-1].

Backbone adaptation (LoRA, AdaLN-zero from behaviour) acts inside the backbone; it is a wrapper
around this model, :class:`brainnet.models.in_loop.BackboneInLoop` (``TrainConfig(lora_rank=4,
adaln_zero=True)``), and this model reads the tokens that wrapper computes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from brainnet.data.layout import N_BEHAVIOUR

from .mem_blocks import ConvHead, SubjectTimeEmbedding, global_head, global_in_dims, maxavg_pool
from .mem_config import (
    ABLATIONS,
    ANSWER_COLUMNS,
    MEMORY_COLUMNS,
    TIME_COLUMNS,
    MemConfig,
    ablation_config,
    behaviour_mask,
)
from .posenc import SphereEncoder, VertexEncodings
from .readout import SubjectReadouts, check_vertex_idx, map_vertex_chunks, subject_key
from .registry import register_model
from .selectors import LayerSelector, RetinaMapper, SelectorMaps, selector_regularizer
from .tokens import as_layer_list, mixed_map_groups, resize_map, sample_mixed_maps_vertex_major

__all__ = ["ABLATIONS", "ANSWER_COLUMNS", "MEMORY_COLUMNS", "TIME_COLUMNS", "MemConfig", "MemModel",
           "ablation_config", "behaviour_mask", "gather_memory", "vertex_features"]


def gather_memory(vectors: torch.Tensor, memory_index, n_frames: int = 32
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Look up memory image vectors for a batch of trials.

    Parameters
    ----------
    vectors : tensor of shape (n_images, D)
        One cached vector per image row.
    memory_index : int array of shape (B, K), K >= n_frames + 1
        Column k = image row shown k slots before the trial (k = 0: current), -1 = blank.
    n_frames : int
        Number of frames back to take (columns 1 .. n_frames).

    Returns
    -------
    memory : tensor of shape (B, n_frames, D), float32, zeros at blank slots
    valid : bool tensor of shape (B, n_frames)
    """
    idx = torch.as_tensor(memory_index, device=vectors.device).long()
    if idx.ndim != 2 or idx.shape[1] < n_frames + 1:
        raise ValueError(f"memory_index must be (B, >= {n_frames + 1}), got {tuple(idx.shape)}")
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (n_images, D), got {tuple(vectors.shape)}")
    idx = idx[:, 1:n_frames + 1]
    if idx.numel() and (int(idx.max()) >= vectors.shape[0] or int(idx.min()) < -1):
        raise ValueError(f"memory_index out of range [-1, {vectors.shape[0]})")
    valid = idx >= 0
    memory = vectors[idx.clamp(min=0)].float() * valid[..., None]
    return memory, valid


def vertex_features(maps: torch.Tensor, glob: torch.Tensor, xy: torch.Tensor, layer_weights: torch.Tensor,
                    align_corners: bool = False) -> torch.Tensor:
    """Per-vertex current-image features, vertex-major (n, B, width): the layer maps (B, L * width, g, g)
    sampled at the vertices' retina positions xy (n, 2), mixed by their layer weights (n, L), plus the
    globals (B, L, width) mixed by the same weights (read by ``VertexReadout(..., vertex_major=True)``)."""
    return sample_mixed_maps_vertex_major(maps, xy, layer_weights, glob.to(maps.dtype), align_corners)


def grouped_readout(maps: torch.Tensor, glob: torch.Tensor, xy: torch.Tensor, layer_weights: torch.Tensor,
                    idx: torch.Tensor, readout, shared: torch.Tensor | None, chunk_size: int | None,
                    align_corners: bool = False) -> torch.Tensor:
    """``readout(vertex_features(...), idx, shared)`` (B, n) for the vertices idx (n,) at xy (n, 2) with
    layer weights (n, L), over groups of vertices that read the same cells
    (:func:`~brainnet.models.tokens.mixed_map_groups`, at most ``chunk_size`` vertices each), the
    readout contracting each group's few rows first (:meth:`~brainnet.models.readout.VertexReadout.mixed`)."""
    order, rows, mix = mixed_map_groups(maps, xy, layer_weights, glob.to(maps.dtype), chunk_size, align_corners)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return readout.mixed(rows, mix, idx[order], shared=shared)[:, inverse]


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out_dim))


class MemModel(SelectorMaps, nn.Module):
    """Memory encoding model (see the module docstring for inputs and branches).

    Parameters
    ----------
    config : MemConfig
    coords : mapping subject -> array of shape (V_s, 3)
        fsaverage sphere coordinates.
    hemi : mapping subject -> array of shape (V_s,)
        0 left / 1 right.

    ``forward(batch, vertex_idx=None) -> (B, N)``.
    """

    def __init__(self, config: MemConfig, coords: Mapping, hemi: Mapping):
        super().__init__()
        c = config
        self.config = c
        encoder = SphereEncoder(n_freqs=c.n_freqs, span=c.span, min_period=c.pe_min_period,
                                max_period=c.pe_max_period, gap=c.pe_gap, radius=c.sphere_radius)
        self.vertices = VertexEncodings(coords, hemi, encoder)
        subjects = self.vertices.subjects
        pe_dim = self.vertices.out_dim
        # current image
        self.conv_heads = nn.ModuleList(
            ConvHead(ch, c.width, c.conv_kernel, c.conv_blocks, c.conv_head) for ch in c.in_channels)
        self.global_proj = nn.ModuleList(global_head(d, c.width, c.global_head)
                                         for d in global_in_dims(c.in_channels, c.global_pool))
        sel = dict(bias=c.selector_bias, zero_last=c.selector_init == "zero")

        def retina() -> RetinaMapper:
            return RetinaMapper(pe_dim, c.mlp_hidden, c.mlp_layers, c.jitter, **sel)

        def layers() -> LayerSelector:
            return LayerSelector(pe_dim, c.n_layers, c.mlp_hidden, c.mlp_layers, **sel)

        if c.per_subject_selectors:
            self.retina = nn.ModuleDict({s: retina() for s in subjects})
            self.layer_selector = nn.ModuleDict({s: layers() for s in subjects})
        else:
            self.retina, self.layer_selector = retina(), layers()
        # behaviour
        if c.use_behaviour:
            self.register_buffer("behaviour_mask", behaviour_mask(c), persistent=False)
            self.behaviour_in = nn.ModuleDict(
                {s: nn.Linear(N_BEHAVIOUR, c.behaviour_hidden) for s in subjects})
            self.behaviour_mlp = nn.Sequential(
                nn.GELU(), nn.Dropout(c.dropout), _mlp(c.behaviour_hidden, c.behaviour_hidden,
                                                       c.behaviour_out, c.dropout))
        # memory images
        if c.has_t1_path:
            self.t1_mlp = _mlp(c.t1_input_dim or c.memory_dim, c.memory_hidden, c.t1_dim, c.dropout)
        if c.n_stack_frames > 0:
            if c.time_embedding == "learned":
                self.time_embedding = nn.Embedding(c.n_memory_frames, c.time_dim)
            else:
                self.subject_time = SubjectTimeEmbedding(subjects, c.time_dim)
            frame_in = c.memory_dim + c.time_dim + (c.behaviour_out if c.use_behaviour else 0)
            self.frame_mlp = _mlp(frame_in, c.memory_hidden, c.frame_dim, c.dropout)
            self.memory_in = nn.ModuleDict(
                {s: nn.Linear(c.n_stack_frames * c.frame_dim, c.memory_hidden) for s in subjects})
            self.memory_mlp = nn.Sequential(
                nn.GELU(), nn.Dropout(c.dropout), _mlp(c.memory_hidden, c.memory_hidden,
                                                       c.memory_out, c.dropout))
        n_vertices = {s: self.vertices.n_vertices(s) for s in subjects}
        self.readouts = SubjectReadouts(n_vertices, c.readout_dim, c.readout_init_std, c.readout_init)

    def _dtype(self) -> torch.dtype:
        return self.readouts[self.vertices.subjects[0]].weight.dtype

    # ---- branches ----
    def current_features(self, batch: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
        """Current-image maps (B, L * width, g, g) (layer-major) and globals (B, L, width)."""
        c = self.config
        dtype = self._dtype()
        local = as_layer_list(batch["local"], c.n_layers, "local", c.layer_names, ndim=4)
        glob = as_layer_list(batch["global"], c.n_layers, "global", c.layer_names, ndim=2)
        maps, gl = [], []
        for i in range(c.n_layers):
            if local[i].shape[1] != c.in_channels[i] or glob[i].shape[1] != c.in_channels[i]:
                raise ValueError(f"layer {i}: expected {c.in_channels[i]} channels, got local "
                                 f"{local[i].shape[1]} / global {glob[i].shape[1]}")
            maps.append(self.conv_heads[i](resize_map(local[i].to(dtype), c.grid_size)))
            pooled = c.global_pool == "maxavg_nonlast" and i < c.n_layers - 1
            gl.append(self.global_proj[i](maxavg_pool(local[i].to(dtype)) if pooled else glob[i].to(dtype)))
        return torch.cat(maps, dim=1), torch.stack(gl, dim=1)

    def embed_behaviour(self, subject: str, behaviour: torch.Tensor) -> torch.Tensor:
        """Behaviour (..., 35) -> embedding (..., behaviour_out); switched-off groups are zeroed."""
        if behaviour.shape[-1] != N_BEHAVIOUR:
            raise ValueError(f"behaviour must end in {N_BEHAVIOUR} columns, got {tuple(behaviour.shape)}")
        x = behaviour.to(self._dtype()) * self.behaviour_mask
        return self.behaviour_mlp(self.behaviour_in[subject](x))

    def _memory_inputs(self, batch: Mapping) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        c = self.config
        if "memory" not in batch or "memory_valid" not in batch:
            raise ValueError("use_memory_images needs batch['memory'] (B, F, D) and "
                             "batch['memory_valid'] (B, F); see gather_memory()")
        mem, valid = batch["memory"], batch["memory_valid"]
        if mem.ndim != 3 or mem.shape[1] < c.n_memory_frames or mem.shape[2] != c.memory_dim:
            raise ValueError(f"memory must be (B, >= {c.n_memory_frames}, {c.memory_dim}), "
                             f"got {tuple(mem.shape)}")
        if valid.shape != mem.shape[:2]:
            raise ValueError(f"memory_valid must be {tuple(mem.shape[:2])}, got {tuple(valid.shape)}")
        f = c.n_memory_frames
        mem_beh = batch.get("memory_behaviour")
        if mem_beh is not None:
            if mem_beh.ndim != 3 or mem_beh.shape[:2] != mem.shape[:2]:
                raise ValueError(f"memory_behaviour must be {tuple(mem.shape[:2])} x 35, "
                                 f"got {tuple(mem_beh.shape)}")
            mem_beh = mem_beh[:, :f]
        return mem[:, :f].to(self._dtype()), valid[:, :f].bool(), mem_beh

    def _t1_input(self, batch: Mapping, mem: torch.Tensor) -> torch.Tensor:
        """Input of the T = -1 MLP (B, t1_input_dim or memory_dim): see ``MemConfig.t1_input_dim``."""
        c = self.config
        if not c.t1_input_dim:
            return mem[:, 0]
        t1 = batch.get("t1_global")
        if t1 is None:
            raise ValueError("t1_input_dim > 0: the batch needs 't1_global' (B, t1_input_dim), the previous "
                             "image's token from BackboneInLoop's t1 backbone")
        if t1.shape != (mem.shape[0], c.t1_input_dim):
            raise ValueError(f"t1_global must be {(mem.shape[0], c.t1_input_dim)}, got {tuple(t1.shape)}")
        return t1.to(self._dtype())

    def shared_features(self, batch: Mapping, subject: str) -> torch.Tensor | None:
        """Vertex-independent features (B, readout_dim - width): T-1 | memory | behaviour T=0 | T=-1."""
        c = self.config
        parts = []
        mem = valid = mem_beh = None
        if c.use_memory_images:
            mem, valid, mem_beh = self._memory_inputs(batch)
        if c.has_t1_path:
            parts.append(self.t1_mlp(self._t1_input(batch, mem)) * valid[:, :1])
        frame_beh = None
        if c.use_behaviour:
            if "behaviour" not in batch:
                raise ValueError("behaviour groups are on: batch needs 'behaviour' (B, 35)")
            beh = batch["behaviour"]
            if beh.ndim != 2:
                raise ValueError(f"behaviour must be (B, 35), got {tuple(beh.shape)}")
            b0 = self.embed_behaviour(subject, beh)
            if mem_beh is None:
                mem_beh_full = batch.get("memory_behaviour")
                prev = mem_beh_full[:, 0] if mem_beh_full is not None else torch.zeros_like(beh)
            else:
                prev = mem_beh[:, 0]
            b1 = self.embed_behaviour(subject, prev)
            if valid is not None:
                b1 = b1 * valid[:, :1]
            if c.n_stack_frames > 0:
                frame_beh = (self.embed_behaviour(subject, mem_beh) if mem_beh is not None
                             else torch.zeros(*mem.shape[:2], c.behaviour_out, dtype=mem.dtype,
                                              device=mem.device))
        if c.n_stack_frames > 0:
            start = 1 if c.separate_t1 else 0
            frames = mem[:, start:]
            b, n = frames.shape[:2]
            if c.time_embedding == "learned":
                t = self.time_embedding.weight[start:start + n]
            else:  # slots counted from the first stacked frame, as the reference
                t = self.subject_time(subject, n, device=frames.device)
            t = t.to(frames.dtype)[None].expand(b, n, -1)
            pieces = [frames, t] if frame_beh is None else [frames, frame_beh[:, start:], t]
            h = self.frame_mlp(torch.cat(pieces, dim=-1)) * valid[:, start:, None]
            h = self.memory_in[subject](h.reshape(b, n * c.frame_dim))
            parts.append(self.memory_mlp(h))
        if c.use_behaviour:
            parts += [b0, b1]
        return torch.cat(parts, dim=1) if parts else None

    def forward(self, batch: Mapping, vertex_idx=None) -> torch.Tensor:
        """Predict responses (B, N) for the batch's subject; N = V_s or len(vertex_idx)."""
        c = self.config
        subject = subject_key(batch["subject"])
        pe_all = self.vertices.get(subject)
        readout = self.readouts[subject]
        maps, glob = self.current_features(batch)
        shared = self.shared_features(batch, subject)
        idx = check_vertex_idx(vertex_idx, pe_all.shape[0], device=pe_all.device)

        retina, layer_selector = self.subject_selectors(subject)
        if maps.device.type == "cpu":  # same numbers, several times fewer operations (host reads: CPU only)
            pe = pe_all[idx]
            return grouped_readout(maps, glob, retina(pe), layer_selector(pe), idx, readout, shared,
                                   c.chunk_size, c.align_corners)

        def predict(ix: torch.Tensor) -> torch.Tensor:
            pe = pe_all[ix]
            feat = vertex_features(maps, glob, retina(pe), layer_selector(pe), c.align_corners)
            return readout(feat, ix, shared=shared, vertex_major=True)

        return map_vertex_chunks(predict, idx, c.chunk_size)

    # ---- per-vertex selector outputs (for maps) ----
    @torch.no_grad()
    def scale(self, subject: str) -> torch.Tensor:
        """NaN per vertex (V_s,): this model has no scale selector (the local maps and global
        tokens are summed, not mixed), so there is no local / global mix to map."""
        pe = self.vertices.get(subject_key(subject))
        return torch.full((pe.shape[0],), float("nan"), device=pe.device)

    def regularizer(self, subject: str, vertex_idx=None) -> torch.Tensor:
        """Layer-selector regulariser (negative normalised entropy, unweighted scalar)."""
        pe_all = self.vertices.get(subject_key(subject))
        pe = pe_all[check_vertex_idx(vertex_idx, pe_all.shape[0], device=pe_all.device)]
        return selector_regularizer(self.subject_selectors(subject)[1](pe))


def _configure(features, options, variant: str) -> MemConfig:
    """MemConfig for cached tokens (layer widths / names, memory vector size), ``options``
    overriding fields, then the switches of ablation row ``variant``."""
    base = dict(in_channels=features.in_channels, layer_names=features.layer_names, memory_dim=features.memory_dim)
    return ablation_config(variant, MemConfig(**{**base, **options}))


def _inputs(variant: str) -> dict[str, str]:
    """Dataset inputs of ablation row ``variant`` (its switches decide them; see :attr:`MemConfig.data_inputs`)."""
    return ablation_config(variant).data_inputs


register_model("mem", MemModel, MemConfig, configure=_configure, inputs=_inputs,
               description="memory encoding model: current image, memory images, behaviour, time")
