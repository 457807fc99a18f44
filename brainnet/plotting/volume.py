"""Subject-space voxels (func1mm units of an ``fship`` / ``hip_func1mm`` dataset) as NIfTI images and slices.

* :func:`voxel_volume` — per-unit values of a prepared subject's voxels back on their 3-D grid;
* :func:`voxel_label_image` — one label NIfTI of the voxels' ROI atlases (thalamus, MTL) with the
  volume's affine;
* :func:`plot_voxel_rois` — a slice montage of those ROIs (nilearn ``plot_roi``), axial and
  coronal, over an optional per-voxel background (e.g. the noise ceiling).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

__all__ = ["plot_voxel_rois", "voxel_label_image", "voxel_volume"]

#: The ROI volumes whose labels :func:`voxel_label_image` combines (NSD's func1mm roi/*.nii.gz).
VOXEL_ATLASES: tuple[str, ...] = ("thalamus", "MTL")


def _require_voxels(subject) -> None:
    if subject.volume_shape is None or not subject.is_voxel.any():
        raise ValueError(f"{subject.name} has no voxel units: prepare the dataset with space='fship' or 'hip_func1mm'")


def voxel_volume(subject, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Per-unit ``values`` of a prepared subject's voxels on their grid.

    Parameters
    ----------
    subject : a :class:`~brainnet.data.prepared.PreparedSubject` with voxels.
    values : array of shape (n_vertices,) (every unit; the surface ones are ignored) or
        (n_voxels,) (the voxel units in unit order).
    fill : value of grid points that are not a unit.

    Returns
    -------
    float64 array of shape ``subject.volume_shape`` (X, Y, Z).
    """
    _require_voxels(subject)
    values = np.asarray(values, dtype=np.float64)
    n_vox = int(subject.is_voxel.sum())
    if values.shape == (subject.n_vertices,):
        values = values[subject.is_voxel]
    elif values.shape != (n_vox,):
        raise ValueError(f"values must have shape ({subject.n_vertices},) or ({n_vox},), got {values.shape}")
    vol = np.full(subject.volume_shape, fill, dtype=np.float64)
    i, j, k = subject.voxel_ijk.T
    vol[i, j, k] = values
    return vol


def voxel_label_image(subject, atlases: Sequence[str] = VOXEL_ATLASES):
    """One label image of the voxels' ROI atlases.

    Codes are consecutive over ``atlases`` (thalamus 1-5, then MTL 6-15 by default), 0 = none; a
    voxel in two atlases keeps the first one's label.

    Returns
    -------
    (nibabel.Nifti1Image int16 of shape ``volume_shape`` with ``subject.volume_affine``,
    names: list with ``names[code]``, ``names[0] = "Unknown"``).
    """
    import nibabel as nib

    _require_voxels(subject)
    labels = np.zeros(subject.n_vertices, dtype=np.int64)
    names = ["Unknown"]
    for atlas in atlases:
        codes, atlas_names = subject.roi_labels(atlas)
        free = (labels == 0) & (codes > 0)
        labels[free] = codes[free] + len(names) - 1
        names += [f"{atlas} {n}" for n in atlas_names[1:]]
    vol = voxel_volume(subject, labels).astype(np.int16)
    return nib.Nifti1Image(vol, np.asarray(subject.volume_affine, dtype=np.float64)), names


def _cut_coords(img, axis: int, n: int) -> list[float]:
    """Up to ``n`` world coordinates (mm) along ``axis`` of evenly spaced slices holding labels."""
    data = np.asarray(img.dataobj)
    ijk = np.argwhere(data > 0)
    slices = np.unique(ijk[:, axis])
    chosen = slices[np.unique(np.round(np.linspace(0, len(slices) - 1, min(n, len(slices)))).astype(int))]
    world = img.affine[:3, :3] @ ijk.T + img.affine[:3, 3:4]  # (3, n_labelled)
    return [float(world[axis, ijk[:, axis] == s].mean()) for s in chosen]


def plot_voxel_rois(subject, atlases: Sequence[str] = VOXEL_ATLASES, background: np.ndarray | None = None,
                    background_label: str = "", n_slices: int = 6, title: str | None = None,
                    output_file: str | os.PathLike | None = None) -> Figure:
    """Slice montage of a subject's voxel ROIs with nilearn's ``plot_roi`` in the volume's own space.

    Two rows: axial (z) and coronal (y) slices through the labelled voxels, ``n_slices`` each;
    one colour per label (legend on the right).

    Parameters
    ----------
    subject : :class:`~brainnet.data.prepared.PreparedSubject` with voxels (``fship`` / ``hip_func1mm``).
    atlases : ROI atlases combined (:func:`voxel_label_image`).
    background : optional per-unit values, shape (n_vertices,) or (n_voxels,), drawn in grey under
        the ROI contours (e.g. ``subject.noise_ceiling``); None: ROIs filled on a black background.
    background_label : what ``background`` is (shown in the title).
    output_file : also save the figure there (PNG, 150 dpi).

    Returns the matplotlib Figure.
    """
    import nibabel as nib
    from nilearn import plotting as nplt

    img, names = voxel_label_image(subject, atlases)
    present = sorted(int(c) for c in np.unique(np.asarray(img.dataobj)) if c > 0)
    colours = plt.cm.tab20(np.arange(len(names) - 1) % 20)
    cmap = ListedColormap(colours)
    bg = None
    if background is not None:
        vol = voxel_volume(subject, background)
        bg = nib.Nifti1Image(vol.astype(np.float32), img.affine)
    fig = plt.figure(figsize=(2.0 * n_slices + 2.6, 4.8))
    grid = fig.add_gridspec(2, 2, width_ratios=[2.0 * n_slices, 2.6], wspace=0.02, hspace=0.12)
    style = dict(view_type="contours", linewidths=1.6) if bg is not None else dict(alpha=0.9)
    for row, (mode, name) in enumerate((("z", "axial"), ("y", "coronal"))):
        ax = fig.add_subplot(grid[row, 0])
        nplt.plot_roi(img, bg_img=bg, cut_coords=_cut_coords(img, "xyz".index(mode), n_slices), display_mode=mode,
                      axes=ax, figure=fig, cmap=cmap, vmin=1, vmax=len(names) - 1, black_bg=True, draw_cross=False,
                      annotate=True, colorbar=False, resampling_interpolation="nearest", title=name, **style)
    legend_ax = fig.add_subplot(grid[:, 1])
    legend_ax.axis("off")
    legend_ax.legend(handles=[Patch(color=colours[c - 1], label=names[c]) for c in present], loc="center left",
                     fontsize=8, frameon=False, title=f"{len(present)} labels", title_fontsize=8)
    what = f"; background: {background_label}" if background is not None and background_label else ""
    fig.suptitle(title or f"{subject.name}: voxel ROIs ({int(subject.is_voxel.sum())} voxels{what})", fontsize=10)
    if output_file is not None:
        from brainnet.plotting.render import save_figure

        save_figure(fig, output_file)
    return fig
