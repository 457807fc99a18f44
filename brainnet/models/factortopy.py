"""FactorTopy: a network-to-brain encoding model whose selectors map a backbone onto cortex.

For each backbone layer l, the local tokens (B, C_l, h, w) go through a bias-free 1x1 conv and
the global token (B, C_l) through a bias-free linear layer, both to a common bottleneck D.
Each vertex then

* samples every layer's bottleneck map at its own image position (x, y) (:class:`RetinaMapper`),
* mixes the layers with its softmax weights (:class:`LayerSelector`), the same weights for
  the sampled local feature and the global feature,
* mixes local and global with ``s`` (:class:`ScaleSelector`): ``(1 - s) * local + s * global``,
* and reads the result out linearly (:class:`VertexReadout`, one per subject).

Selectors are shared by all subjects (they see the common fsaverage sphere); readouts are
per subject.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .configs import SelectorConfig
from .posenc import SphereEncoder, VertexEncodings
from .readout import SubjectReadouts, check_vertex_idx, map_vertex_chunks, subject_key
from .registry import register_model
from .selectors import LayerSelector, RetinaMapper, ScaleSelector, SelectorMaps, selector_regularizer
from .tokens import PADDING_MODES, RESIZE_MODES, as_layer_list, resize_map, sample_mixed_maps


@dataclass(frozen=True)
class FactorTopyConfig(SelectorConfig):
    """Hyper-parameters of :class:`FactorTopy`.

    The fields of :class:`SelectorConfig` (token inputs, vertex encoding, selector MLPs,
    chunking, readout init, regulariser: weight 0.1 decaying to 0 over 2000 steps) plus:

    Attributes
    ----------
    bottleneck : int
        D, the common feature size after the per-layer projections.
    use_scale : bool
        False drops the global tokens and the ScaleSelector (local features only).
    token_resize : str
        How local maps are resized to ``grid_size`` (:func:`~brainnet.models.tokens.resize_map`):
        "area" (average pooling when shrinking) or "bilinear".
    padding : str
        What a vertex position outside the token grid's cell centres reads
        (:func:`~brainnet.models.tokens.bilinear_weights`): "border" (the edge cell) or "zeros".
    """

    bottleneck: int = 128
    use_scale: bool = True
    token_resize: str = "area"
    padding: str = "border"

    def __post_init__(self):
        super().__post_init__()
        if self.bottleneck < 1:
            raise ValueError(f"bottleneck must be >= 1, got {self.bottleneck}")
        if self.token_resize not in RESIZE_MODES:
            raise ValueError(f"token_resize must be one of {RESIZE_MODES}, got {self.token_resize!r}")
        if self.padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {PADDING_MODES}, got {self.padding!r}")


class FactorTopy(SelectorMaps, nn.Module):
    """FactorTopy encoding model.

    Parameters
    ----------
    config : FactorTopyConfig
    coords : mapping subject -> array of shape (V_s, 3)
        fsaverage sphere coordinates of each subject's vertices.
    hemi : mapping subject -> array of shape (V_s,)
        0 left / 1 right.

    ``forward(batch, vertex_idx=None)`` takes ``batch = {"local": [B, C_l, h, w] per layer,
    "global": [B, C_l] per layer, "subject": str}`` (layers as list or dict) and returns
    predictions of shape (B, N) for the subject's vertices (N = V_s, or len(vertex_idx)).
    """

    def __init__(self, config: FactorTopyConfig, coords: Mapping, hemi: Mapping):
        super().__init__()
        self.config = config
        c = config
        encoder = SphereEncoder(n_freqs=c.n_freqs, span=c.span, radius=c.sphere_radius)
        self.vertices = VertexEncodings(coords, hemi, encoder)
        pe_dim = self.vertices.out_dim
        self.local_proj = nn.ModuleList(
            nn.Conv2d(ch, c.bottleneck, kernel_size=1, bias=False) for ch in c.in_channels)
        self.retina = RetinaMapper(pe_dim, c.mlp_hidden, c.mlp_layers, c.jitter)
        self.layer_selector = LayerSelector(pe_dim, c.n_layers, c.mlp_hidden, c.mlp_layers)
        if c.use_scale:
            self.global_proj = nn.ModuleList(
                nn.Linear(ch, c.bottleneck, bias=False) for ch in c.in_channels)
            self.scale_selector = ScaleSelector(pe_dim, c.mlp_hidden, c.mlp_layers)
        n_vertices = {s: self.vertices.n_vertices(s) for s in self.vertices.subjects}
        self.readouts = SubjectReadouts(n_vertices, c.bottleneck, c.readout_init_std)

    def _param_dtype(self) -> torch.dtype:
        return self.local_proj[0].weight.dtype

    def project(self, batch: Mapping) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Bottleneck features of a batch.

        Returns
        -------
        maps : tensor of shape (B, L * D, g, g)
            Projected local maps of all layers, stacked along channels (layer-major).
        glob : tensor of shape (B, L, D) or None (when ``use_scale`` is False)
        """
        c = self.config
        dtype = self._param_dtype()
        local = as_layer_list(batch["local"], c.n_layers, "local", c.layer_names, ndim=4)
        maps = []
        for i, (x, proj) in enumerate(zip(local, self.local_proj)):
            if x.shape[1] != c.in_channels[i]:
                raise ValueError(f"local layer {i}: expected {c.in_channels[i]} channels, got {x.shape[1]}")
            maps.append(proj(resize_map(x.to(dtype), c.grid_size, c.token_resize)))
        glob = None
        if c.use_scale:
            gl = as_layer_list(batch["global"], c.n_layers, "global", c.layer_names, ndim=2)
            parts = []
            for i, (g, proj) in enumerate(zip(gl, self.global_proj)):
                if g.shape[1] != c.in_channels[i]:
                    raise ValueError(f"global layer {i}: expected {c.in_channels[i]} channels, got {g.shape[1]}")
                parts.append(proj(g.to(dtype)))
            glob = torch.stack(parts, dim=1)
        return torch.cat(maps, dim=1), glob

    def forward(self, batch: Mapping, vertex_idx=None) -> torch.Tensor:
        """Predict responses: batch -> (B, N); see the class docstring."""
        c = self.config
        subject = subject_key(batch["subject"])
        pe_all = self.vertices.get(subject)
        readout = self.readouts[subject]
        maps, glob = self.project(batch)
        idx = check_vertex_idx(vertex_idx, pe_all.shape[0], device=pe_all.device)

        def predict(ix: torch.Tensor) -> torch.Tensor:
            pe = pe_all[ix]
            weights = self.layer_selector(pe)  # (n, L)
            feat = sample_mixed_maps(maps, self.retina(pe), weights, c.align_corners, c.padding)  # (B, n, D)
            if glob is not None:
                g = torch.einsum("bld,nl->bnd", glob, weights)
                feat = ScaleSelector.mix(feat, g, self.scale_selector(pe))
            return readout(feat, ix)

        return map_vertex_chunks(predict, idx, c.chunk_size)

    # ---- per-vertex selector outputs (for maps) ----
    @torch.no_grad()
    def scale(self, subject: str) -> torch.Tensor:
        """Local (0) .. global (1) mix per vertex (V_s,); 0 everywhere when ``use_scale`` is off."""
        pe = self.vertices.get(subject_key(subject))
        if not self.config.use_scale:
            return torch.zeros(pe.shape[0], device=pe.device)
        return self.scale_selector.scale(pe)

    def regularizer(self, subject: str, vertex_idx=None) -> torch.Tensor:
        """Selector regulariser (unweighted scalar) on the given vertices; see
        :func:`brainnet.models.selectors.selector_regularizer`."""
        pe_all = self.vertices.get(subject_key(subject))
        pe = pe_all[check_vertex_idx(vertex_idx, pe_all.shape[0], device=pe_all.device)]
        s = self.scale_selector(pe) if self.config.use_scale else None
        return selector_regularizer(self.layer_selector(pe), s)


def _configure(features, options, variant: str) -> FactorTopyConfig:
    """FactorTopyConfig for cached tokens (layer widths / names), ``options`` overriding fields."""
    if variant != "full":
        raise ValueError("ablations apply to the memory model only (model='mem')")
    return FactorTopyConfig(**{"in_channels": features.in_channels, "layer_names": features.layer_names, **options})


register_model("factortopy", FactorTopy, FactorTopyConfig, configure=_configure,
               description="network-to-brain model with per-vertex layer / space / scale selectors")
