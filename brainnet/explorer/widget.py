"""The explorer as an anywidget (JupyterLab, VS Code, Colab): the page's script as an ES module.

The model state is one trait, ``data`` = {"meta": JSON-able dict, "buffers": {key: zlib-compressed
bytes}}; ipywidgets sends the bytes as binary buffers (no base64 in the notebook kernel's messages).
"""

from __future__ import annotations

import anywidget
import traitlets

from brainnet.explorer.core import STATIC, Explorer


class ExplorerWidget(anywidget.AnyWidget):
    """Widget view of an :class:`~brainnet.explorer.core.Explorer`."""

    _esm = (STATIC / "explorer.js").read_text() + "\nexport default { render: brainnetExplorer.renderWidget };\n"
    _css = (STATIC / "explorer.css").read_text()
    data = traitlets.Dict().tag(sync=True)

    def __init__(self, explorer: Explorer, **kwargs):
        super().__init__(data={"meta": explorer.meta, "buffers": dict(explorer.buffers)}, **kwargs)
