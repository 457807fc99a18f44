"""Figures: fsaverage surface maps of per-vertex results, and the figures of each notebook.

Surface maps (:mod:`.maps`; each returns the matplotlib Figure)::

    plot_scalar_map(values, hemi, index, ...)     r, R^2, noise ceiling
    plot_layer_map(weights, hemi, index, ...)     preferred layer x certainty, 2-D legend
    plot_space_map(xy, hemi, index, ...)          (x, y) on a constant-lightness colour square
    plot_scale_map(scale, hemi, index, ...)       local .. global
    plot_channel_map(channels, hemi, index, ...)  cluster ids (tab20)
    plot_four_panel(layer, xy, scale, channels, hemi, index, ...)

``hemi`` / ``index`` are a prepared subject's ``vertices["hemi"]`` / ``vertices["index"]``;
``mesh`` may be the :class:`~brainnet.data.PreparedDataset` itself. Nothing here imports pycortex.

Modules: :mod:`.surfaces` (meshes), :mod:`.layout` (where each hemisphere and view is drawn),
:mod:`.placement` (values of selected vertices onto the mesh), :mod:`.colors`, :mod:`.draw`,
:mod:`.legends`, :mod:`.render` (the drawing step every map shares), :mod:`.maps`,
:mod:`.design` (memory index of a run), :mod:`.training` (learning curves, score per ROI,
retina positions).
"""

from brainnet.plotting.colors import (
    background_colors,
    channel_colors,
    layer_colors,
    layer_legend_image,
    normalised_entropy,
    scalar_colors,
    scale_colors,
    space_colors,
    space_legend_image,
)
from brainnet.plotting.design import plot_memory_index
from brainnet.plotting.draw import DrawStyle
from brainnet.plotting.layout import BrainLayout, HemiPanel, compute_layout
from brainnet.plotting.maps import (
    plot_channel_map,
    plot_four_panel,
    plot_layer_map,
    plot_scalar_map,
    plot_scale_map,
    plot_space_map,
)
from brainnet.plotting.network import plot_backbones_side_by_side, plot_layer_vs_hierarchy, plot_top_channels
from brainnet.plotting.placement import check_selection, to_mesh_values
from brainnet.plotting.render import save_figure
from brainnet.plotting.replay import plot_lag_profiles, plot_peak_bootstrap, plot_planted_vs_recovered, plot_replay_maps
from brainnet.plotting.surfaces import HemiMesh, Mesh, flatten_occipital_cap, load_mesh
from brainnet.plotting.training import plot_learning_curves, plot_positions, plot_score_bars

__all__ = [
    "BrainLayout",
    "DrawStyle",
    "HemiMesh",
    "HemiPanel",
    "Mesh",
    "background_colors",
    "channel_colors",
    "check_selection",
    "compute_layout",
    "flatten_occipital_cap",
    "layer_colors",
    "layer_legend_image",
    "load_mesh",
    "normalised_entropy",
    "plot_backbones_side_by_side",
    "plot_channel_map",
    "plot_four_panel",
    "plot_lag_profiles",
    "plot_layer_map",
    "plot_layer_vs_hierarchy",
    "plot_learning_curves",
    "plot_memory_index",
    "plot_peak_bootstrap",
    "plot_planted_vs_recovered",
    "plot_positions",
    "plot_replay_maps",
    "plot_scalar_map",
    "plot_scale_map",
    "plot_score_bars",
    "plot_space_map",
    "plot_top_channels",
    "save_figure",
    "scalar_colors",
    "scale_colors",
    "space_colors",
    "space_legend_image",
    "to_mesh_values",
]
