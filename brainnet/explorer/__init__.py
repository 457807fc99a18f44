"""Interactive brain explorer: every map on both hemispheres, hover and click a vertex to see what it reads.

``explore(maps, hemi, index, mesh=..., rois=..., details=...)`` returns an :class:`Explorer` that
displays inline in JupyterLab (an anywidget) and writes one offline HTML page with
:meth:`Explorer.save_html`. The page is a small WebGL2 viewer written for brainnet
(``static/explorer.js``, no third-party script): inflated / flat / sphere surfaces, a map picker,
colour bars and the 2-D layer / space legends, ROI outlines and names, hover and click panels,
and a list of voxel units.

Modules: :mod:`.maps` (map kinds, quantisation), :mod:`.payload` (meshes, units, ROI outlines),
:mod:`.core` (``explore``, :class:`Details`, :class:`Explorer`), :mod:`.widget` (anywidget),
:mod:`.collect` (maps of notebook results, saved and gathered for ``brainnet demo``).
"""

from brainnet.explorer.core import Details, Explorer, explore
from brainnet.explorer.maps import Categorical, Layers, Scalar, Space, dequantise, quantise, scale_map

__all__ = ["Categorical", "Details", "Explorer", "Layers", "Scalar", "Space", "dequantise", "explore", "quantise",
           "scale_map"]
