"""fsaverage surface maps: meshes, colour functions, and nilearn-style plot functions.

Plot functions (each returns the matplotlib Figure)::

    plot_scalar_map(values, hemi, index, ...)     r, R^2, noise ceiling
    plot_layer_map(weights, hemi, index, ...)     preferred layer x certainty, 2-D legend
    plot_space_map(xy, hemi, index, ...)          (x, y) on a constant-lightness colour square
    plot_scale_map(scale, hemi, index, ...)       local .. global
    plot_channel_map(channels, hemi, index, ...)  cluster ids (tab20)
    plot_four_panel(layer, xy, scale, channels, hemi, index, ...)

``hemi`` / ``index`` are a prepared dataset's ``vertices.npz`` arrays. Nothing here imports
pycortex.
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
from brainnet.plotting.placement import check_selection, to_mesh_values
from brainnet.plotting.surfaces import HemiMesh, Mesh, flatten_occipital_cap, load_mesh

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
    "plot_channel_map",
    "plot_four_panel",
    "plot_layer_map",
    "plot_scalar_map",
    "plot_scale_map",
    "plot_space_map",
    "scalar_colors",
    "scale_colors",
    "space_colors",
    "space_legend_image",
    "to_mesh_values",
]
