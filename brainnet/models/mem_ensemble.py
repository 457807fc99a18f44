"""Several memory encoding models in one: the members of an ROI-model ensemble, trained together.

An ROI-model ensemble (:mod:`brainnet.training.ensemble`) trains one :class:`~brainnet.models.MemModel`
per group of vertices of a partition. :class:`MemEnsemble` holds M such members (the groups listed in
``MemEnsembleConfig.groups``) as ONE model that ``fit_encoder`` trains like any other:

* the token inputs are read once per batch; the vertex-independent branches of every member (conv
  heads, global heads, T-1 / memory / behaviour MLPs) run in one ``torch.func.vmap`` over the members'
  stacked weights (each body parameter is stored as (M, ...)), which turns the members' first
  convolutions into one convolution with M times the output channels and the rest into grouped ones;
* each vertex belongs to at most one member (its group's); the member's retina mapper and layer
  selector place and mix its maps, and one readout row per covered vertex (rows of all members
  in one :class:`SubjectReadouts`, in vertex order) reads them out;
* vertices in none of the listed groups are predicted as 0 (no parameters): a constant has r = 0,
  so the run's validation r is the covered vertices' mean r times a constant (checkpoint choice,
  early stopping and the soup rank checkpoints as on the covered vertices alone), and the loss
  there is a constant (no gradient).

Frozen neck (``neck``): the retina mapper and layer selector of a trained whole-brain ``mem``
checkpoint are loaded once and shared, frozen (no gradient, run without autograd), by every member.

With one group, the model is one member trained alone; members trained alone and the same members
stacked give the same outputs for the same weights (:meth:`MemEnsemble.member_state` /
:meth:`MemEnsemble.load_member_state` move one member's weights between them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from .mem import MemModel, vertex_features
from .mem_config import MemConfig, ablation_config
from .readout import SubjectReadouts, check_vertex_idx, map_vertex_chunks, subject_key
from .registry import register_model
from .selectors import LayerSelector, RetinaMapper, SelectorMaps, selector_regularizer

#: Prefixes of the MemModel parameters that are per vertex or per selector (not in a member's body).
_NOT_BODY = ("readouts.", "retina", "layer_selector", "vertices.")
#: Prefix of the frozen neck's modules in the state dict.
NECK_PREFIXES = ("neck_retina", "neck_layers")


@dataclass(frozen=True)
class MemEnsembleConfig(MemConfig):
    """A :class:`MemConfig` (every member's architecture) plus the ensemble fields.

    Attributes
    ----------
    partition : path of a ``.npz`` with one int array (V_s,) per subject: each vertex's group id
        (>= 0) or -1 (in no group); see :class:`brainnet.training.ensemble.Partition`
    groups : the group ids trained here, one member each (in this order)
    neck : "" (each member trains its own selectors) or the path of a checkpoint of a trained ``mem``
        model whose retina mapper and layer selector every member uses, frozen
    """

    partition: str = ""
    groups: tuple[int, ...] = ()
    neck: str = ""

    def __post_init__(self):
        super().__post_init__()
        if not self.partition:
            raise ValueError("MemEnsembleConfig.partition must name a partition file (.npz)")
        if not self.groups or len(set(self.groups)) != len(self.groups) or min(self.groups) < 0:
            raise ValueError(f"groups must be distinct group ids >= 0, got {self.groups}")


def load_partition_labels(path: str | Path, subjects) -> dict[str, np.ndarray]:
    """Group id per vertex (V_s,) int64 of each subject from a partition ``.npz``."""
    with np.load(path) as z:
        missing = [s for s in subjects if s not in z.files]
        if missing:
            raise ValueError(f"partition {path} has no labels for subjects {missing}")
        return {s: z[s].astype(np.int64) for s in subjects}


def neck_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``retina*`` / ``layer_selector*`` weights of a ``mem`` checkpoint (Lightning or soup file)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt)
    state = {k[len("model."):] if k.startswith("model.") else k: v for k, v in state.items()}
    out = {k: v for k, v in state.items() if k.startswith(("retina", "layer_selector"))}
    if not out:
        raise ValueError(f"{path} holds no retina mapper / layer selector weights (not a 'mem' model?)")
    return out


class _Body(MemModel):
    """A member's vertex-independent branches (a MemModel without vertices, selectors or readouts).

    ``forward(batch, subject) -> (maps (B, L * width, g, g), globals (B, L, width), shared (B, D_s))``
    (D_s = 0 when the variant has no shared features)."""

    def __init__(self, config: MemConfig, subjects):
        one = {s: np.array([[1.0, 0.0, 0.0]]) for s in subjects}
        super().__init__(config, one, {s: np.zeros(1, np.int64) for s in subjects})
        for name in ("readouts", "retina", "layer_selector", "vertices"):
            delattr(self, name)

    def _dtype(self) -> torch.dtype:
        return next(self.conv_heads.parameters()).dtype

    def forward(self, batch: Mapping, subject: str):
        maps, glob = self.current_features(batch)
        shared = self.shared_features(batch, subject)
        if shared is None:
            shared = glob.new_zeros(glob.shape[0], 0)
        return maps, glob, shared


class MemEnsemble(SelectorMaps, nn.Module):
    """M memory-encoding members of one partition in one model (see the module docstring).

    Parameters
    ----------
    config : MemEnsembleConfig
    coords, hemi : subject -> (V_s, 3) sphere coordinates / (V_s,) hemisphere, as :class:`MemModel`

    ``forward(batch, vertex_idx=None) -> (B, N)``: 0 at vertices in none of the groups.
    """

    def __init__(self, config: MemEnsembleConfig, coords: Mapping, hemi: Mapping):
        super().__init__()
        c = self.config = config
        self.vertices = _vertex_encodings(c, coords, hemi)
        subjects = self.vertices.subjects
        labels = load_partition_labels(c.partition, subjects)
        self.n_members = len(c.groups)
        counts = {}
        for i, s in enumerate(subjects):
            lab = labels[s]
            if lab.shape != (self.vertices.n_vertices(s),):
                raise ValueError(f"partition labels of {s} have shape {lab.shape}, the subject has "
                                 f"{self.vertices.n_vertices(s)} vertices")
            owner = np.full(lab.shape, -1, np.int64)
            for m, g in enumerate(c.groups):
                owner[lab == g] = m
            covered = np.flatnonzero(owner >= 0)
            slot = np.full(lab.shape, -1, np.int64)
            slot[covered] = np.arange(covered.size)
            # slot: readout row of each vertex (-1: not covered); member: owner of each readout row
            self.register_buffer(f"slot_{i}", torch.from_numpy(slot), persistent=False)
            self.register_buffer(f"member_{i}", torch.from_numpy(owner[covered]), persistent=False)
            counts[s] = max(int(covered.size), 1)
        self._index = {s: i for i, s in enumerate(subjects)}
        bodies = [_Body(c, subjects) for _ in range(self.n_members)]
        self.body = bodies[0]
        for name in [n for n, _ in self.body.named_parameters()]:
            stacked = torch.stack([b.get_parameter(name).detach() for b in bodies])
            _set_param(self.body, name, nn.Parameter(stacked))
        pe_dim = self.vertices.out_dim
        sel = dict(bias=c.selector_bias, zero_last=c.selector_init == "zero")

        def retina() -> nn.Module:
            return _per_subject(lambda: RetinaMapper(pe_dim, c.mlp_hidden, c.mlp_layers, c.jitter, **sel), c, subjects)

        def layers() -> nn.Module:
            return _per_subject(lambda: LayerSelector(pe_dim, c.n_layers, c.mlp_hidden, c.mlp_layers, **sel), c,
                                subjects)

        if c.neck:
            self.neck_retina, self.neck_layers = retina(), layers()
            state = neck_state(c.neck)
            own = {k.replace("neck_retina", "retina", 1).replace("neck_layers", "layer_selector", 1): v
                   for k, v in {**_prefixed(self.neck_retina, "neck_retina"),
                                **_prefixed(self.neck_layers, "neck_layers")}.items()}
            if set(own) != set(state) or any(own[k].shape != state[k].shape for k in own):
                raise ValueError(f"the neck in {c.neck} does not match this config's selectors "
                                 "(mlp_hidden, mlp_layers, selector_bias, per_subject_selectors, subjects)")
            for k, v in own.items():
                v.data.copy_(state[k])
            for p in [*self.neck_retina.parameters(), *self.neck_layers.parameters()]:
                p.requires_grad_(False)
        else:
            self.retina = nn.ModuleList(retina() for _ in range(self.n_members))
            self.layer_selector = nn.ModuleList(layers() for _ in range(self.n_members))
        self.readouts = SubjectReadouts(counts, c.readout_dim, c.readout_init_std, c.readout_init)

    # ---- bookkeeping ----
    def _slot(self, subject: str) -> torch.Tensor:
        return getattr(self, f"slot_{self._index[subject]}")

    def _member(self, subject: str) -> torch.Tensor:
        return getattr(self, f"member_{self._index[subject]}")

    def covered(self, subject: str) -> torch.Tensor:
        """Bool (V_s,): the vertices some member predicts."""
        return self._slot(subject_key(subject)) >= 0

    def owner(self, subject: str) -> torch.Tensor:
        """Int64 (V_s,): each vertex's member index (-1: none)."""
        slot = self._slot(subject_key(subject))
        out = torch.full_like(slot, -1)
        ok = slot >= 0
        out[ok] = self._member(subject_key(subject))[slot[ok]]
        return out

    def member_selectors(self, m: int, subject: str) -> tuple[RetinaMapper, LayerSelector]:
        """(retina mapper, layer selector) of member ``m`` for a subject (the neck's when frozen)."""
        retina, layers = ((self.neck_retina, self.neck_layers) if self.config.neck
                          else (self.retina[m], self.layer_selector[m]))
        key = subject_key(subject)
        return (retina[key] if isinstance(retina, nn.ModuleDict) else retina,
                layers[key] if isinstance(layers, nn.ModuleDict) else layers)

    # ---- forward ----
    def bodies(self, batch: Mapping, subject: str):
        """Every member's body on one batch: maps (M, B, L * width, g, g), globals (M, B, L, width),
        shared (M, B, D_s)."""
        params = dict(self.body.named_parameters())

        def one(p):
            return functional_call(self.body, p, (batch, subject))

        return vmap(one, randomness="different")(params)

    def forward(self, batch: Mapping, vertex_idx=None) -> torch.Tensor:
        """Predict responses (B, N) for the batch's subject; N = V_s or len(vertex_idx); 0 where not covered."""
        c = self.config
        subject = subject_key(batch["subject"])
        pe_all = self.vertices.get(subject)
        idx = check_vertex_idx(vertex_idx, pe_all.shape[0], device=pe_all.device)
        maps, glob, shared = self.bodies(batch, subject)
        readout = self.readouts[subject]
        slot = self._slot(subject)[idx]
        member = torch.where(slot >= 0, self._member(subject)[slot.clamp(min=0)], -1)
        out = maps.new_zeros(maps.shape[1], idx.numel())
        for m in range(self.n_members):
            where = torch.nonzero(member == m).squeeze(1)
            if where.numel() == 0:
                continue
            retina, layers = self.member_selectors(m, subject)
            sh = shared[m] if shared.shape[-1] else None

            def predict(w: torch.Tensor, m=m, retina=retina, layers=layers, sh=sh) -> torch.Tensor:
                pe = pe_all[idx[w]]
                with torch.set_grad_enabled(torch.is_grad_enabled() and not c.neck):
                    xy, weights = retina(pe), layers(pe)
                feat = vertex_features(maps[m], glob[m], xy, weights, c.align_corners)
                return readout(feat, slot[w], shared=sh, vertex_major=True)

            out = out.index_copy(1, where, map_vertex_chunks(predict, where, c.chunk_size))
        return out

    # ---- maps and regulariser ----
    @torch.no_grad()
    def _per_vertex(self, subject: str, fn, width: int) -> torch.Tensor:
        subject = subject_key(subject)
        pe = self.vertices.get(subject)
        owner = self.owner(subject)
        out = torch.full((pe.shape[0], width), float("nan"), device=pe.device)
        for m in range(self.n_members):
            sel = owner == m
            if sel.any():
                out[sel] = fn(*self.member_selectors(m, subject), pe[sel])
        return out

    def positions(self, subject: str) -> torch.Tensor:
        """Retina positions (V_s, 2) from each vertex's member (NaN where not covered)."""
        return self._per_vertex(subject, lambda r, _l, pe: r.positions(pe), 2)

    def layer_weights(self, subject: str) -> torch.Tensor:
        """Layer weights (V_s, L) from each vertex's member (NaN where not covered)."""
        return self._per_vertex(subject, lambda _r, lay, pe: lay.layer_weights(pe), self.config.n_layers)

    @torch.no_grad()
    def scale(self, subject: str) -> torch.Tensor:
        """NaN (V_s,): no scale selector (as :meth:`MemModel.scale`)."""
        return torch.full((self.n_vertices(subject),), float("nan"))

    def regularizer(self, subject: str, vertex_idx=None) -> torch.Tensor:
        """Members' layer-selector regulariser on their vertices, weighted by vertex count (0 with a frozen neck)."""
        subject = subject_key(subject)
        pe_all = self.vertices.get(subject)
        zero = pe_all.new_zeros(())
        if self.config.neck:
            return zero
        idx = check_vertex_idx(vertex_idx, pe_all.shape[0], device=pe_all.device)
        owner = self.owner(subject)[idx]
        total, n = zero, 0
        for m in range(self.n_members):
            sel = idx[owner == m]
            if sel.numel():
                total = total + sel.numel() * selector_regularizer(self.member_selectors(m, subject)[1](pe_all[sel]))
                n += sel.numel()
        return total / max(n, 1)

    # ---- one member's weights ----
    def member_state(self, m: int) -> dict[str, torch.Tensor]:
        """Member ``m``'s weights as the state dict of a one-member MemEnsemble of its group (same config,
        ``groups=(groups[m],)``)."""
        state = self.state_dict()
        out = {}
        for k, v in state.items():
            if k.startswith("body."):
                out[k] = v[m:m + 1].clone()
            elif k.startswith(("retina.", "layer_selector.")):
                head, idx, rest = k.split(".", 2)
                if int(idx) == m:
                    out[f"{head}.0.{rest}"] = v.clone()
            elif k.startswith("readouts."):
                out[k] = v[self._readout_rows(k, m)].clone()
            else:
                out[k] = v.clone()
        return out

    @torch.no_grad()
    def load_member_state(self, m: int, state: Mapping[str, torch.Tensor]) -> None:
        """Set member ``m``'s weights from a one-member MemEnsemble's state dict (see :meth:`member_state`)."""
        own = dict(self.state_dict(keep_vars=True))
        for k, v in state.items():
            if k.startswith("body."):
                own[k][m].copy_(v[0])
            elif k.startswith(("retina.", "layer_selector.")):
                head, _idx, rest = k.split(".", 2)
                own[f"{head}.{m}.{rest}"].copy_(v)
            elif k.startswith("readouts."):
                own[k][self._readout_rows(k, m)] = v
            elif not k.startswith(NECK_PREFIXES):
                own[k].copy_(v)

    def _readout_rows(self, key: str, m: int) -> torch.Tensor:
        subject = key.split(".")[2]
        return torch.nonzero(self._member(subject) == m).squeeze(1)


def _vertex_encodings(c: MemConfig, coords, hemi):
    from .posenc import SphereEncoder, VertexEncodings

    encoder = SphereEncoder(n_freqs=c.n_freqs, span=c.span, min_period=c.pe_min_period, max_period=c.pe_max_period,
                            gap=c.pe_gap, radius=c.sphere_radius)
    return VertexEncodings(coords, hemi, encoder)


def _per_subject(make, c: MemConfig, subjects) -> nn.Module:
    return nn.ModuleDict({s: make() for s in subjects}) if c.per_subject_selectors else make()


def _prefixed(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict(keep_vars=True).items()}


def _set_param(module: nn.Module, name: str, value: nn.Parameter) -> None:
    *path, leaf = name.split(".")
    for part in path:
        module = getattr(module, part)
    setattr(module, leaf, value)


def _configure(features, options, variant: str) -> MemEnsembleConfig:
    base = dict(in_channels=features.in_channels, layer_names=features.layer_names, memory_dim=features.memory_dim)
    return ablation_config(variant, MemEnsembleConfig(**{**base, **options}))


register_model("mem_ensemble", MemEnsemble, MemEnsembleConfig, configure=_configure,
               description="members of an ROI-model ensemble (one per vertex group) trained as one model")
