"""Tests of brainnet.plotting: meshes, placement, colour functions, rendered maps, training figures."""

from __future__ import annotations

import io

import matplotlib
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from brainnet.data import PreparedDataset
from brainnet.errors import DataFormatError
from brainnet.plotting import (
    HemiPanel,
    channel_colors,
    compute_layout,
    layer_colors,
    layer_legend_image,
    load_mesh,
    normalised_entropy,
    plot_channel_map,
    plot_four_panel,
    plot_layer_map,
    plot_learning_curves,
    plot_positions,
    plot_scalar_map,
    plot_scale_map,
    plot_score_bars,
    plot_space_map,
    scalar_colors,
    scale_colors,
    space_colors,
    space_legend_image,
    to_mesh_values,
)
from brainnet.plotting.colors import SPACE_LIGHTNESS, srgb_to_oklab
from brainnet.plotting.draw import roi_label_positions, roi_segments

N5 = 10242


@pytest.fixture(scope="module")
def sphere5():
    return load_mesh("fsaverage5", "sphere")


@pytest.fixture(scope="module")
def selection(sphere5):
    """A posterior selection on both hemispheres: hemi [V], index [V], unit sphere coords [V, 3]."""
    hemi, index, coords = [], [], []
    for h in (0, 1):
        c = sphere5.hemisphere(h).coords
        sel = np.flatnonzero(c[:, 1] < 0)
        hemi.append(np.full(sel.size, h, dtype=np.int8))
        index.append(sel.astype(np.int64))
        coords.append(c[sel] / 100.0)
    return np.concatenate(hemi), np.concatenate(index), np.concatenate(coords)


@pytest.fixture(scope="module")
def npz_without_flat(tmp_path_factory):
    """A prepared-dataset-style surfaces/fsaverage.npz (fsaverage5, no flat mesh)."""
    root = tmp_path_factory.mktemp("dataset")
    (root / "surfaces").mkdir()
    arrays = {}
    for surf in ("sphere", "inflated"):
        m = load_mesh("fsaverage5", surf)
        for name, hm in (("lh", m.lh), ("rh", m.rh)):
            arrays[f"{name}_{surf}_coords"] = hm.coords.astype(np.float32)
            arrays[f"{name}_{surf}_faces"] = hm.faces.astype(np.int32)
            arrays[f"{name}_sulc"] = hm.sulc.astype(np.float32)
    np.savez(root / "surfaces" / "fsaverage.npz", **arrays)
    return root


def _png_rgb(fig: Figure) -> np.ndarray:
    """The figure rendered at its own dpi without cropping: float RGB [H, W, 3]."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white")
    buf.seek(0)
    return mpimg.imread(buf)[..., :3]


def _pixel(fig: Figure, ax, xy) -> tuple[int, int]:
    """Row, column of the pixel showing data point xy of ax (same dpi as _png_rgb)."""
    fig.canvas.draw()
    px, py = ax.transData.transform(np.asarray(xy, dtype=float)[None])[0]
    height = int(round(fig.get_figheight() * fig.dpi))
    return int(height - py), int(px)


# ---------------------------------------------------------------- meshes


def test_load_mesh_fsaverage5_surfaces():
    for surf in ("inflated", "flat", "pial"):
        m = load_mesh("fsaverage5", surf)
        assert m.n_vertices == (N5, N5)
        assert m.surf == surf
        assert m.lh.sulc.shape == (N5,) and np.std(m.lh.sulc) > 0
        assert m.lh.faces.max() < N5
    flat = load_mesh("fsaverage5", "flat")
    assert flat.is_flat and not load_mesh("fsaverage5", "inflated").is_flat


def test_load_mesh_npz_and_generated_flat(npz_without_flat, sphere5):
    inflated = load_mesh(npz_without_flat, "inflated")  # dataset directory is accepted
    ref = load_mesh("fsaverage5", "inflated")
    np.testing.assert_allclose(inflated.rh.coords, ref.rh.coords, atol=1e-4)
    np.testing.assert_array_equal(inflated.lh.faces, ref.lh.faces)

    flat = load_mesh(npz_without_flat / "surfaces" / "fsaverage.npz", "flat", cap_degrees=90.0)
    assert flat.is_flat
    for h in (0, 1):
        sph = sphere5.hemisphere(h).coords
        fm = flat.hemisphere(h)
        used = np.unique(fm.faces)
        # only the occipital cap (angle to -y within 90 degrees) is kept
        assert np.all(sph[used, 1] < 1e-3 * 100)
        assert fm.faces.shape[0] < sphere5.hemisphere(h).faces.shape[0]
        # seen from behind: the occipital pole at the centre, -x on the left, dorsal (+z) up
        pole = np.argmin(sph[:, 1])
        assert np.linalg.norm(fm.coords[pole, :2]) < 5.0
        posterior = sph[:, 1] < -50
        most_left = np.flatnonzero(posterior)[np.argmin(sph[posterior, 0])]
        most_dorsal = np.flatnonzero(posterior)[np.argmax(sph[posterior, 2])]
        assert fm.coords[most_left, 0] < -20 and fm.coords[most_dorsal, 1] > 20


def test_load_mesh_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown mesh source"):
        load_mesh("fsaverage7")
    with pytest.raises(ValueError, match="surf must be one of"):
        load_mesh("fsaverage5", "smoothwm")
    np.savez(tmp_path / "bad.npz", lh_sulc=np.zeros(3))
    with pytest.raises(DataFormatError, match="lh_inflated_coords"):
        load_mesh(tmp_path / "bad.npz", "inflated")
    with pytest.raises(DataFormatError, match="no such file"):
        load_mesh(tmp_path / "missing.npz")


# ---------------------------------------------------------------- placement


def test_to_mesh_values_places_values_on_their_vertices(rng):
    hemi = np.array([0, 0, 1, 1, 1], dtype=np.int8)
    index = np.array([5, 2, 0, 9, 3])
    values = rng.normal(size=5)
    lh, rh = to_mesh_values(values, hemi, index, (10, 12))
    assert lh.shape == (10,) and rh.shape == (12,)
    np.testing.assert_array_equal(lh[[5, 2]], values[:2])
    np.testing.assert_array_equal(rh[[0, 9, 3]], values[2:])
    assert np.isnan(lh).sum() == 8 and np.isnan(rh).sum() == 9
    lh2, rh2 = to_mesh_values(np.stack([values, -values], 1), hemi, index, (10, 12), fill=0.0)
    np.testing.assert_array_equal(rh2[9], [values[3], -values[3]])
    assert lh2.shape == (10, 2) and lh2[0].tolist() == [0.0, 0.0]
    # no selection = the values cover the full mesh, lh then rh
    full = np.arange(22.0)
    lh3, rh3 = to_mesh_values(full, None, None, (10, 12))
    np.testing.assert_array_equal(rh3, full[10:])


@pytest.mark.parametrize(
    ("hemi", "index", "n_values", "match"),
    [
        ([0, 1], [0, 1, 2], 3, "lengths differ"),
        ([0, 1, 1], [0, 1, 2], 2, "lengths differ"),
        ([0, 3, 1], [0, 1, 2], 3, "hemi must be 0"),
        ([0, -1, 1], [0, 1, 2], 3, "hemi must be 0"),
        ([0, 1, 1], [0, 1, 12], 3, "out of range"),
        ([0, 0, 1], [0, -1, 2], 3, "out of range"),
        ([0, 0, 1], [4, 4, 2], 3, "repeat"),
        ([0.0, 1.0, 1.0], [0, 1, 2], 3, "integers"),
    ],
)
def test_to_mesh_values_errors(hemi, index, n_values, match):
    with pytest.raises(ValueError, match=match):
        to_mesh_values(np.zeros(n_values), np.array(hemi), np.array(index), (10, 12))


def test_selection_errors_reach_the_plot_functions():
    with pytest.raises(ValueError, match="lengths differ"):
        plot_scalar_map(np.zeros(3), np.array([0, 1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="out of range"):  # fsaverage indices on the fsaverage5 mesh
        plot_scalar_map(np.zeros(2), np.array([0, 1]), np.array([0, 163841]))
    with pytest.raises(ValueError, match="full mesh"):
        plot_scalar_map(np.zeros(5))
    with pytest.raises(ValueError, match="both hemi and index"):
        plot_scalar_map(np.zeros(2), np.array([0, 1]))


# ---------------------------------------------------------------- colours


def test_layer_colors_hue_and_brightness():
    cool_warm = matplotlib.colormaps["coolwarm"]
    n_layers = 6
    w = np.array(
        [
            np.eye(n_layers)[0],  # one-hot first layer
            np.eye(n_layers)[-1],  # one-hot last layer
            np.full(n_layers, 1.0 / n_layers),  # uniform
            [0.5, 0.1, 0.1, 0.1, 0.1, 0.1],  # first layer, uncertain
            [0.9, 0.02, 0.02, 0.02, 0.02, 0.02],  # first layer, fairly certain
        ]
    )
    rgb = layer_colors(w)
    np.testing.assert_allclose(rgb[0], cool_warm(0.0)[:3], atol=1e-9)
    np.testing.assert_allclose(rgb[1], cool_warm(1.0)[:3], atol=1e-9)
    assert rgb[0][2] > rgb[0][0] and rgb[1][0] > rgb[1][2]  # cold = blue, warm = red
    np.testing.assert_allclose(rgb[2], 0.0, atol=1e-9)  # uniform = black
    assert 0 < rgb[3].sum() < rgb[4].sum() < rgb[0].sum()  # brightness falls with entropy
    np.testing.assert_allclose(rgb[3] / rgb[3].max(), rgb[0] / rgb[0].max(), atol=1e-9)  # same hue
    h = normalised_entropy(w)
    np.testing.assert_allclose(h[[0, 1, 2]], [0.0, 0.0, 1.0], atol=1e-12)
    # unnormalised weights are normalised; "mean" hue sits between the layers
    np.testing.assert_allclose(layer_colors(3 * w[:1]), rgb[:1])
    mid = layer_colors(np.array([[0.5, 0, 0, 0, 0, 0.5]]), hue="mean", max_entropy=1.0)
    np.testing.assert_allclose(mid[0] / (1 - np.log(2) / np.log(6)), cool_warm(0.5)[:3], atol=1e-9)
    legend = layer_legend_image(n_layers, 10)
    np.testing.assert_allclose(legend[0, 0], rgb[0])
    np.testing.assert_allclose(legend[-1], 0.0)
    for bad in (np.ones((3, 1)), -np.ones((3, 4)), np.zeros((2, 3)), np.ones(4)):
        with pytest.raises(ValueError):
            layer_colors(bad)


def test_space_colors_square_corners_and_constant_lightness():
    square = space_legend_image(64)
    corners = space_colors(np.array([[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]]))
    np.testing.assert_allclose(corners[0], square[0, 0], atol=1e-12)  # top-left of the legend = (-1, -1)
    np.testing.assert_allclose(corners[1], square[-1, -1], atol=1e-12)
    np.testing.assert_allclose(corners[2], square[0, -1], atol=1e-12)
    np.testing.assert_allclose(corners[3], square[-1, 0], atol=1e-12)
    pairwise = np.linalg.norm(corners[:, None] - corners[None], axis=-1)
    assert pairwise[np.triu_indices(4, 1)].min() > 0.15  # the four corners are distinct colours
    lab = srgb_to_oklab(square.reshape(-1, 3))
    np.testing.assert_allclose(lab[:, 0], SPACE_LIGHTNESS, atol=2e-3)
    assert np.all((square >= 0) & (square <= 1))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        space_colors(np.array([[1.5, 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        space_colors(np.zeros((3, 3)))


def test_scale_channel_and_scalar_colors():
    ends = scale_colors(np.array([0.0, 1.0, -3.0, 7.0]))
    assert ends[0, 2] > ends[0, 1] and ends[0, 0] > ends[0, 1]  # local: purple
    assert ends[1, 0] > ends[1, 1] > ends[1, 2]  # global: orange
    np.testing.assert_allclose(ends[2], ends[0])  # clipped to the ends
    np.testing.assert_allclose(ends[3], ends[1])
    tab20 = matplotlib.colormaps["tab20"].colors
    cols = channel_colors(np.array([0, 3, 19, 20]))
    np.testing.assert_allclose(cols[:3], np.array(tab20)[[0, 3, 19]])
    np.testing.assert_allclose(cols[3], cols[0])
    with pytest.raises(ValueError):
        channel_colors(np.array([-1, 2]))
    rgb, shown = scalar_colors(np.array([0.05, 0.5, np.nan, -0.6]), cmap="RdBu_r", vmin=-1, vmax=1, threshold=0.1)
    assert shown.tolist() == [False, True, False, True]
    np.testing.assert_allclose(rgb[1], matplotlib.colormaps["RdBu_r"](0.75)[:3])


# ---------------------------------------------------------------- ROI geometry


def test_roi_segments_and_label_positions():
    # unit square split into two triangles; labels 1 on the left column, 0 on the right
    xy = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    panel = HemiPanel(view="flat", hemi=0, xy=xy, faces=np.array([[0, 1, 2], [0, 2, 3]]), shade=None)
    segs = roi_segments(panel, np.array([1, 0, 0, 1]))
    assert segs.shape == (2, 2, 2)
    assert np.allclose(segs[:, :, 0], 0.5)  # the boundary is the vertical line x = 0.5
    assert len(roi_segments(panel, np.array([1, -1, -1, 1]))) == 0  # edge of the selection: no line
    assert len(roi_segments(panel, np.array([2, 2, 2, 2]))) == 0
    pos = roi_label_positions(panel, np.array([1, 0, 0, 1]), min_vertices=2)
    assert list(pos) == [1] and pos[1][0] == 0.0


# ---------------------------------------------------------------- layout


def test_layout_hemispheres_side_by_side_and_cameras():
    flat = compute_layout("fsaverage5", "flat")
    lh, rh = flat.panel("flat", 0), flat.panel("flat", 1)
    assert lh.xy[lh.visible, 0].max() < rh.xy[rh.visible, 0].min()
    lat = compute_layout("fsaverage5", "lateral")
    infl = load_mesh("fsaverage5", "inflated")
    for h in (0, 1):
        p = lat.panel("lateral", h)
        c = infl.hemisphere(h).coords
        vis = p.visible
        lateral_side = c[:, 0] < np.median(c[:, 0]) if h == 0 else c[:, 0] > np.median(c[:, 0])
        assert vis[lateral_side].mean() > 0.9 > 0.5 > vis[~lateral_side].mean()  # back faces culled
        front, back = np.argmax(c[:, 1]), np.argmin(c[:, 1])  # anterior / posterior tips
        # lateral views: anterior is on the left for lh, on the right for rh
        assert (p.xy[front, 0] < p.xy[back, 0]) == (h == 0)
    both = compute_layout("fsaverage5", "inflated")
    assert both.views == ("lateral", "medial")
    with pytest.raises(ValueError, match="unknown view"):
        compute_layout("fsaverage5", "sideways")


# ---------------------------------------------------------------- rendered maps


def test_every_map_type_writes_a_png(tmp_path, selection, rng):
    hemi, index, coords = selection
    n = hemi.size
    weights = rng.dirichlet(np.full(8, 0.3), size=n)
    xy = np.tanh(coords[:, [0, 2]] * 2)
    rois = (coords[:, 2] > 0.2).astype(np.int16) + 2 * (coords[:, 2] < -0.3)
    names = np.array(["Unknown", "upper", "lower"])
    calls = {
        "scalar": lambda f: plot_scalar_map(coords[:, 0], hemi, index, output_file=f, title="r", rois=rois,
                                            roi_names=names, threshold=0.05),  # fmt: skip
        "layer": lambda f: plot_layer_map(weights, hemi, index, output_file=f, title="layer"),
        "space": lambda f: plot_space_map(xy, hemi, index, output_file=f, view="lateral"),
        "scale": lambda f: plot_scale_map(rng.uniform(size=n), hemi, index, output_file=f),
        "channel": lambda f: plot_channel_map(rng.integers(0, 20, n), hemi, index, output_file=f),
    }
    for name, call in calls.items():
        path = tmp_path / f"{name}.png"
        fig = call(path)
        assert isinstance(fig, Figure)
        assert path.stat().st_size > 20_000, name
        img = mpimg.imread(path)
        assert img.shape[0] > 300 and img.shape[1] > 600
        assert np.std(img[..., :3]) > 0.05  # not a blank image
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "left hemisphere" in texts and "right hemisphere" in texts


def test_four_panel_composes_into_one_figure(tmp_path, selection, rng):
    hemi, index, coords = selection
    n = hemi.size
    path = tmp_path / "four.png"
    rois = (coords[:, 2] > 0.2).astype(np.int64)
    fig = plot_four_panel(rng.dirichlet(np.ones(4), size=n), rng.uniform(-1, 1, (n, 2)), rng.uniform(size=n),
                          rng.integers(0, 20, n), hemi, index, rois=rois, roi_names=["", "upper"],
                          output_file=path, title="brain to network")  # fmt: skip
    titles = [ax.get_title() for ax in fig.axes]
    for t in ("layer", "space", "scale", "channel"):
        assert t in titles
    assert path.stat().st_size > 50_000
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("upper") >= 4 * 2  # the ROI named in every panel, both hemispheres


def _patch_selection(radius: float):
    """lh vertices within `radius` (flat mm) of a central visible vertex: (hemi, index, vertex, xy)."""
    layout = compute_layout("fsaverage5", "flat")
    p = layout.panel("flat", 0)
    vis = np.flatnonzero(p.visible)
    centre = p.xy[vis].mean(axis=0)
    v = vis[np.argmin(np.linalg.norm(p.xy[vis] - centre, axis=1))]
    flat = load_mesh("fsaverage5", "flat").lh.coords[:, :2]
    near = np.flatnonzero(np.linalg.norm(flat - flat[v], axis=1) < radius)
    return np.zeros(near.size, dtype=np.int8), near, v, p.xy[v], layout


def test_rendered_pixel_has_the_vertex_colour():
    hemi, index, v, xy, layout = _patch_selection(radius=12.0)
    ids = np.full(index.size, 3)
    fig = plot_channel_map(ids, hemi, index, legend=False)
    ax = fig.axes[0]
    img = _png_rgb(fig)
    row, col = _pixel(fig, ax, xy)
    expected = np.array(matplotlib.colormaps["tab20"].colors[3])
    np.testing.assert_allclose(img[row - 1 : row + 2, col - 1 : col + 2].reshape(-1, 3), np.tile(expected, (9, 1)),
                               atol=1.5 / 255)  # fmt: skip
    # the same place on the right hemisphere is background grey, not the patch colour
    rh = layout.panel("flat", 1)
    mirror = rh.xy[v]
    r2, c2 = _pixel(fig, ax, mirror)
    px = img[r2, c2]
    assert np.ptp(px) < 0.02 and np.abs(px - expected).max() > 0.2
    # the patch colour covers about the patch's area, nowhere else
    match = np.all(np.abs(img - expected) < 2 / 255, axis=-1)
    rows, cols = np.nonzero(match)
    assert np.hypot(rows.mean() - row, cols.mean() - col) < 10


def test_rendered_space_map_corner_colour():
    hemi, index, v, xy, _ = _patch_selection(radius=10.0)
    fig = plot_space_map(np.tile([1.0, 1.0], (index.size, 1)), hemi, index, legend=False)
    img = _png_rgb(fig)
    row, col = _pixel(fig, fig.axes[0], xy)
    np.testing.assert_allclose(img[row, col], space_colors(np.array([[1.0, 1.0]]))[0], atol=1.5 / 255)


def test_axes_and_figure_arguments(selection):
    hemi, index, coords = selection
    fig = Figure(figsize=(8, 4))
    axs = fig.subplots(1, 2)
    out = plot_scale_map(np.clip(coords[:, 2] + 0.5, 0, 1), hemi, index, axes=axs[1], title="given axes")
    assert out is fig and axs[1].get_title() == "given axes" and len(axs[1].collections) >= 2
    with pytest.raises(ValueError, match="does not belong"):
        plot_scale_map(np.zeros(hemi.size), hemi, index, axes=axs[0], figure=Figure())
    with pytest.raises(ValueError, match="mask"):
        plot_scale_map(np.zeros(hemi.size), hemi, index, mask=np.ones(hemi.size))
    with pytest.raises(ValueError, match="rois"):
        plot_scale_map(np.zeros(hemi.size), hemi, index, rois=np.zeros(3, dtype=int))
    flat = load_mesh("fsaverage5", "flat")
    with pytest.raises(ValueError, match="cannot be drawn"):
        plot_scale_map(np.zeros(hemi.size), hemi, index, mesh=flat, view="lateral")


def test_a_prepared_dataset_is_a_mesh_source(npz_without_flat):
    # a PreparedDataset whose root holds the surfaces (its other files are not needed to draw)
    dataset = PreparedDataset.__new__(PreparedDataset)
    dataset.root = npz_without_flat
    from_dataset = compute_layout(dataset, "lateral")
    from_path = compute_layout(npz_without_flat / "surfaces" / "fsaverage.npz", "lateral")
    for a, b in zip(from_dataset.panels, from_path.panels):
        np.testing.assert_array_equal(a.xy, b.xy)
        np.testing.assert_array_equal(a.faces, b.faces)
    with pytest.raises(TypeError, match="PreparedDataset"):
        compute_layout(object(), "lateral")


# ---------------------------------------------------------------- training figures


def test_score_bars_draw_every_model_and_the_noise_ceiling(tmp_path):
    table = pd.DataFrame({"roi": ["early", "ventral", "all vertices"], "noise_ceiling": [60.0, 40.0, 50.0],
                          "mem_full": [30.0, 10.0, 20.0], "ridge": [25.0, 5.0, 15.0]})
    path = tmp_path / "bars.png"
    fig = plot_score_bars(table, ["mem_full", "ridge"], output_file=path)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [30.0, 10.0, 20.0, 25.0, 5.0, 15.0]  # model by model, ROI by ROI
    # the two models' bars sit side by side around each ROI's tick
    lefts = np.array([p.get_x() + p.get_width() / 2 for p in ax.patches]).reshape(2, 3)
    np.testing.assert_allclose(lefts.mean(axis=0), ax.get_xticks())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["early", "ventral", "all vertices"]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [60.0, 40.0, 50.0])
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="pca_linear"):
        plot_score_bars(table, ["mem_full", "pca_linear"])


def test_learning_curves_one_line_per_run():
    full = pd.DataFrame({"step": [10, 20, 30], "train_loss": [1.0, 0.8, 0.7], "val_r": [0.1, 0.2, 0.25]})
    fig = plot_learning_curves({"full": full, "empty": full.iloc[:0], "no_answer": full * [1, 2, 0.5]},
                               title="curves")
    loss_ax, r_ax = fig.axes
    assert [ln.get_label() for ln in r_ax.lines] == ["full", "no_answer"]  # the empty history is skipped
    np.testing.assert_array_equal(loss_ax.lines[1].get_ydata(), [2.0, 1.6, 1.4])
    np.testing.assert_array_equal(r_ax.lines[0].get_xdata(), [10, 20, 30])
    np.testing.assert_array_equal(r_ax.lines[0].get_ydata(), [0.1, 0.2, 0.25])
    assert fig.get_suptitle() == "curves"


def test_positions_scatter_the_masked_vertices(rng):
    truth = rng.uniform(-1, 1, (50, 2))
    learned = truth * 0.5 + rng.normal(0, 0.05, (50, 2))
    mask = np.arange(50) < 20
    fig = plot_positions(learned, truth[:, 0], truth[:, 1], mask, r=(0.91, 0.87))
    x_ax, y_ax = fig.axes
    np.testing.assert_array_equal(x_ax.collections[0].get_offsets(), np.stack([truth[:20, 0], learned[:20, 0]], 1))
    np.testing.assert_array_equal(y_ax.collections[0].get_offsets(), np.stack([truth[:20, 1], learned[:20, 1]], 1))
    assert (x_ax.get_title(), y_ax.get_title()) == ("r = 0.910", "r = 0.870")
    with pytest.raises(ValueError, match="positions"):
        plot_positions(learned[:, :1], truth[:, 0], truth[:, 1])
