"""B2NConfig presets of the brain-to-network run: the "bddn" preset's defining settings (schedule read off
the real scheduler), its token resize / zero padding, W·Wᵀ channel clustering and pca_lowrank top channels on
planted data, ImageNet input normalisation, and a few training steps on nsd-mini with a random ViT-B/16."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import adjusted_rand_score

from brainnet.analysis.channels import cluster_channels, kernel_rows, spherical_kmeans, top_channel_image
from brainnet.backbones import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD
from brainnet.models import FactorTopy, FactorTopyConfig
from brainnet.models.tokens import resize_map, sample_maps
from brainnet.training.b2n_config import B2N_PRESETS, B2NConfig
from brainnet.training.config import TrainConfig
from brainnet.training.fit import fit_encoder
from brainnet.training.module import EncoderModule
from brainnet.training.network import network_features

from tests._mini_cache import prepared_tiny


def _lrs(b2n: B2NConfig, steps, total: int = 1000, **changes) -> dict[int, list[float]]:
    """Learning rate of every parameter group at ``steps``, from the scheduler EncoderModule builds."""
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(30, 3))
    coords = 100 * coords / np.linalg.norm(coords, axis=1, keepdims=True)
    options = {**b2n.model_options, "bottleneck": 4, "mlp_hidden": 8}
    model = FactorTopy(FactorTopyConfig(in_channels=(3, 5), **options), {"subj01": coords},
                       {"subj01": np.zeros(30, int)})
    module = EncoderModule(model, b2n.train_config("", 1, "x", "", **changes))
    module.trainer = SimpleNamespace(estimated_stepping_batches=total)
    setup = module.configure_optimizers()
    opt, sched = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    out = {}
    for step in range(max(steps) + 1):
        if step in steps:
            out[step] = [g["lr"] for g in opt.param_groups]
        opt.step()
        sched.step()
    return out


def test_bddn_preset_defining_settings():
    b = B2NConfig.preset("bddn")
    assert b.name == "bddn" and b.backbones == ("clip-vit-b-16",)
    assert (b.bottleneck, b.mlp_hidden, b.reg_weight, b.reg_decay_steps) == (128, 128, 0.1, 2000)
    assert (b.lr, b.batch_size, b.vertices_per_step, b.readout_lr_mult) == (1e-3, 8, None, 1.0)
    # torch's own AdamW default, what an AdamW built without weight_decay uses
    assert b.weight_decay == torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]).defaults["weight_decay"]
    assert (b.schedule, b.warmup_steps) == ("constant", 0)
    assert (b.pool, b.grid_size, b.token_resize, b.padding) == (None, 8, "bilinear", "zeros")
    # the std of torch.nn.Linear(128, V)'s default init, the readout BDDN builds
    linear = torch.nn.Linear(128, 20000)
    assert b.readout_init_std == pytest.approx(float(linear.weight.detach().std()), rel=0.01)
    assert (b.normalization, b.standardize) == ("imagenet", False)
    assert (b.channel_method, b.n_channels, b.n_kmeans) == ("kernel", 20, 1000)
    assert b.top_channel_options == {"pca": "lowrank", "clip": (5.0, 95.0), "joint_clip": True}
    cfg = b.train_config("", 1, b.backbones[0], "")
    assert isinstance(cfg, TrainConfig) and (cfg.model, cfg.batch_size, cfg.vertices_per_step) == ("factortopy", 8,
                                                                                                   None)
    assert FactorTopyConfig(**cfg.model_options).token_resize == "bilinear"
    # the "notebook" preset is the class defaults (notebook 04's numbers unchanged); changes go on top
    assert B2NConfig.preset("notebook") == B2NConfig() and B2N_PRESETS["notebook"] == {}
    nb = B2NConfig()
    assert (nb.bottleneck, nb.vertices_per_step, nb.lr, nb.schedule, nb.channel_method) == (32, 512, 2e-3, "cosine",
                                                                                           "weights")
    assert B2NConfig.preset("bddn", image_size=64).image_size == 64
    assert B2NConfig.from_dict(b.to_dict()) == b
    with pytest.raises(ValueError, match="unknown preset"):
        B2NConfig.preset("mem")
    for bad in ({"token_resize": "nearest"}, {"schedule": "step"}, {"normalization": "mine"},
                {"channel_method": "ward"}, {"backbones": "clip-vit-b-16"}, {"n_channels": 2000}):
        with pytest.raises(ValueError):
            B2NConfig.preset("bddn", **bad)
    names = {f.name for f in dataclasses.fields(B2NConfig)}
    assert set(B2NConfig.TRAIN_FIELDS) <= names & {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(B2NConfig.MODEL_FIELDS) <= names & {f.name for f in dataclasses.fields(FactorTopyConfig)}


def test_schedule_shapes_from_the_real_scheduler():
    steps = (0, 1, 9, 10, 500, 999)
    constant = _lrs(B2NConfig.preset("bddn"), steps)
    assert all(lr == pytest.approx(1e-3) for lrs in constant.values() for lr in lrs)  # one rate, every group
    warm = _lrs(B2NConfig.preset("bddn"), steps, warmup_steps=10)  # warmup, then constant (min_lr_ratio unused)
    assert [warm[s][0] for s in steps] == pytest.approx([1e-4, 2e-4, 1e-3, 1e-3, 1e-3, 1e-3])
    cosine = _lrs(B2NConfig.preset("notebook"), steps, warmup_steps=10)
    body = [min(cosine[s]) for s in steps]
    assert body[2] == pytest.approx(2e-3) and body[2] > body[4] > body[5] == pytest.approx(2e-3 * 0.05, rel=0.01)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")


def test_bilinear_token_resize_and_zero_padding_match_torch():
    x = torch.randn(2, 3, 14, 14, dtype=torch.float64)
    np.testing.assert_allclose(resize_map(x, 8, "bilinear"), F.interpolate(x, size=(8, 8), mode="bilinear"))
    assert not torch.allclose(resize_map(x, 8, "bilinear"), resize_map(x, 8, "area"))
    xy = torch.rand(60, 2, dtype=torch.float64) * 2.2 - 1.1
    for padding in ("zeros", "border"):
        ref = F.grid_sample(x, xy[None, :, None].expand(2, -1, -1, -1), padding_mode=padding, align_corners=False)
        np.testing.assert_allclose(sample_maps(x, xy, padding=padding), ref[..., 0].transpose(1, 2), atol=1e-12)
    edge = torch.tensor([[-0.99, 0.0]], dtype=torch.float64)  # beyond the first cell centre: zeros fade it out
    ones = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    assert sample_maps(ones, edge, padding="zeros").item() < 0.6 and sample_maps(ones, edge).item() == 1.0


def _planted_weights(rng, n_groups=4, per_group=60, dim=16):
    centres = rng.normal(size=(n_groups, dim))
    truth = np.repeat(np.arange(n_groups), per_group)
    scale = rng.uniform(0.5, 3.0, size=(len(truth), 1))  # vertex gain must not matter
    return scale * (centres[truth] + 0.15 * rng.normal(size=(len(truth), dim))), truth


def test_kernel_channel_clustering_is_kmeans_on_the_rows_of_w_wt(rng):
    w, truth = _planted_weights(rng)
    kernel = w @ w.T  # (V, V), what BDDN clusters
    z = kernel_rows(w)
    assert z.shape == (len(w), 16)
    np.testing.assert_allclose(z @ z.T, kernel @ kernel.T, rtol=1e-8, atol=1e-8 * np.abs(kernel).max() ** 2)
    # with as many channels as centroids (no linkage) the clusters are those of k-means on the explicit rows
    fine = cluster_channels(w, n_clusters=12, n_kmeans=12, method="kernel")
    explicit, _ = spherical_kmeans(kernel, 12)
    assert adjusted_rand_score(fine, explicit) == 1.0
    # k-means then Ward on the centroids' cosine rows recovers the planted channels
    labels = cluster_channels(w, n_clusters=4, n_kmeans=40, method="kernel")
    assert adjusted_rand_score(truth, labels) == 1.0
    with pytest.raises(ValueError, match="method"):
        cluster_channels(w, method="gram")


def test_lowrank_top_channels_with_joint_clipping(rng):
    d, n = 12, 80
    basis = np.linalg.qr(rng.normal(size=(d, 3)))[0]
    w = rng.normal(size=(n, 3)) * [6.0, 3.0, 1.5] @ basis.T + 0.05 * rng.normal(size=(n, d))
    fmap = rng.normal(size=(d, 10, 10))
    got = top_channel_image(w, fmap, pca="lowrank", joint_clip=True)
    # the same by exact SVD: vertex-space components of Wᵀ centred over channels, directions Wᵀ V
    wt = w.T
    v = np.linalg.svd(wt - wt.mean(axis=0), full_matrices=False)[2][:3].T
    dirs = (wt @ v).T
    dirs *= np.sign(dirs[np.arange(3), np.argmax(np.abs(dirs), axis=1)])[:, None]
    proj = dirs @ fmap.reshape(d, -1)
    lo, hi = np.percentile(proj, [5, 95])  # one pair for all three components
    want = (np.clip(proj, lo, hi) - lo) / (hi - lo)
    np.testing.assert_allclose(got, want.T.reshape(10, 10, 3), atol=1e-3)
    # joint clipping keeps the components' relative scale: the weakest never reaches the ends
    assert np.isclose(got, 0).mean() == pytest.approx(0.05, abs=0.01) and got[..., 2].min() > 0
    per = top_channel_image(w, fmap, pca="lowrank")
    assert per[..., 2].min() == 0 and per[..., 2].max() == 1
    assert not np.allclose(per, top_channel_image(w, fmap))  # the "svd" default differs
    with pytest.raises(ValueError, match="pca"):
        top_channel_image(w, fmap, pca="eig")


@pytest.fixture(scope="module")
def vit():
    """ViT-B/16 with random weights at 32 px (2 x 2 tokens) as the bddn preset builds it; only its first two
    blocks are tapped (the tower stops there) to keep token caching of the ~2000 tiny-fixture images near
    10 s on one thread (all 12 blocks: ~50 s)."""
    return B2NConfig.preset("bddn", image_size=32).backbone("clip-vit-b-16-random", layers=[0, 1])


def test_imagenet_normalisation_of_the_bddn_backbone(vit):
    assert (vit.mean, vit.std) == (IMAGENET_MEAN, IMAGENET_STD) and vit.input_size == 32
    x = torch.rand(2, 3, 32, 32)
    want = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(vit.prepare(x), want)
    imagenet = vit.fingerprint
    try:
        vit.set_normalization(CLIP_MEAN, CLIP_STD)  # what "clip-vit-b-16" uses by itself
        assert vit.fingerprint != imagenet and not torch.allclose(vit.prepare(x), want)
        assert (vit.mean, vit.std) == (CLIP_MEAN, CLIP_STD)
    finally:
        vit.set_normalization(IMAGENET_MEAN, IMAGENET_STD)
    assert vit.fingerprint == imagenet
    with pytest.raises(ValueError):
        vit.set_normalization((0.5, 0.5), (1, 1, 1))


def test_bddn_preset_trains_on_nsd_mini_with_a_random_vit_b16(tmp_path_factory, tmp_path, vit):
    torch.set_num_threads(1)
    prepared = prepared_tiny(tmp_path_factory)
    b2n = B2NConfig.preset("bddn", image_size=32)
    assert vit.widths == [768, 768]
    features, stats = network_features(prepared, vit, pool=b2n.pool, standardize=b2n.standardize)
    assert stats is None and features.local["0"].shape[1:] == (768, 2, 2)  # unpooled: the model resizes
    cfg = b2n.train_config(prepared, "subj01", "clip-vit-b-16-random", tmp_path / "run", max_steps=4)
    fit = fit_encoder(cfg, features=features)
    assert fit.global_step == 4
    mc = fit.model.config
    assert (mc.bottleneck, mc.grid_size, mc.token_resize, mc.padding, mc.reg_decay_steps) == (
        128, 8, "bilinear", "zeros", 2000)
    last = torch.load(fit.out_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["lr_schedulers"][0]["_last_lr"] == pytest.approx([1e-3] * len(last["lr_schedulers"][0]["_last_lr"]))
    assert np.isfinite(fit.summary["eval_mean_r"])
