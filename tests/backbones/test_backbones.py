"""Backbone adapters: shapes, layer bookkeeping, normalisation, weights, offline behaviour."""

from __future__ import annotations

import json
import textwrap
import time

import numpy as np
import pytest
import torch
from torch import nn

from brainnet.backbones import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    create_backbone,
    list_backbones,
    resolve_layer_indices,
    wrap_module,
)
from brainnet.backbones.tiny import TINY_RECORD, TINY_WEIGHTS
from brainnet.errors import WeightsUnavailableError

torch.set_num_threads(1)

# a DINOv2-like ViT served by a local torch hub directory (no network)
HUBCONF = textwrap.dedent(
    '''
    import torch
    from torch import nn

    dependencies = ["torch"]


    class Block(nn.Module):
        def __init__(self, d, heads):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
            self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

        def forward(self, x):
            h = self.norm1(x)
            x = x + self.attn(h, h, h, need_weights=False)[0]
            return x + self.mlp(self.norm2(x))


    class TinyDino(nn.Module):
        def __init__(self, embed_dim=32, depth=4, patch_size=14, num_register_tokens=1):
            super().__init__()
            self.embed_dim, self.patch_size, self.num_register_tokens = embed_dim, patch_size, num_register_tokens
            self.patch_embed = nn.Conv2d(3, embed_dim, patch_size, patch_size)
            self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim))
            self.register_tokens = nn.Parameter(torch.randn(1, num_register_tokens, embed_dim))
            self.blocks = nn.ModuleList(Block(embed_dim, 2) for _ in range(depth))
            self.norm = nn.LayerNorm(embed_dim)

        def get_intermediate_layers(self, x, n=1, reshape=False, return_class_token=False, norm=True):
            b, _, h, w = x.shape
            t = self.patch_embed(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls_token.expand(b, -1, -1), self.register_tokens.expand(b, -1, -1), t], 1)
            take = range(len(self.blocks) - n, len(self.blocks)) if isinstance(n, int) else n
            outs = []
            for i, blk in enumerate(self.blocks):
                t = blk(t)
                if i in take:
                    outs.append(t)
            assert len(outs) == len(take)
            if norm:
                outs = [self.norm(o) for o in outs]
            cls = [o[:, 0] for o in outs]
            outs = [o[:, 1 + self.num_register_tokens:] for o in outs]
            if reshape:
                outs = [o.reshape(b, h // self.patch_size, w // self.patch_size, -1).permute(0, 3, 1, 2) for o in outs]
            return tuple(zip(outs, cls)) if return_class_token else tuple(outs)


    def dinov2_vits14(pretrained=False, **kwargs):
        if pretrained:
            raise RuntimeError("no weights in this test hub")
        return TinyDino(**kwargs)
    '''
)


@pytest.fixture
def hub_dir(tmp_path):
    d = tmp_path / "hub_repo"
    d.mkdir()
    (d / "hubconf.py").write_text(HUBCONF)
    return d


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.c2(self.c1(x)).mean((2, 3)))


OPEN_CLIP_SMALL = {"layers": 3, "width": 64, "head_width": 32, "patch_size": 16, "image_size": 64, "embed_dim": 32}
SAM_SMALL = dict(image_size=64, embed_dim=32, depth=3, num_heads=2, global_attn_indexes=(2,), window_size=2)

# name, kwargs, expected (n_layers, widths, grid sides), global = CLS? (None: spatial mean)
CASES = {
    "vit_tiny": ("timm:vit_tiny_patch16_224-random", dict(image_size=64), (12, [192] * 12, [4] * 12)),
    "resnet18": ("timm:resnet18-random", dict(image_size=64), (5, [64, 64, 128, 256, 512], [32, 16, 8, 4, 2])),
    "convnext_atto": ("timm:convnext_atto-random", dict(image_size=64), (4, [40, 80, 160, 320], [16, 8, 4, 2])),
    "open_clip": ("open_clip:custom-random", dict(vision_cfg=OPEN_CLIP_SMALL), (3, [64] * 3, [4] * 3)),
    "sam": ("sam-vit-b-random", SAM_SMALL, (3, [32] * 3, [4] * 3)),
    "tiny_random": ("brainnet-tiny-random", {}, (4, [24, 48, 96, 192], [32, 16, 8, 4])),
}


def _make(case, hub_dir=None, **extra):
    if case == "hub":
        return create_backbone("dinov2-vits14-random", repo=str(hub_dir), source="local", image_size=56, **extra)
    if case == "module":
        return create_backbone("module", module=SmallCNN(), hook_layers=["c1", "c2"], image_size=32, **extra)
    name, kw = CASES[case][:2]
    return create_backbone(name, **kw, **extra)


EXPECTED = {k: v[2] for k, v in CASES.items()}
EXPECTED["hub"] = (4, [32] * 4, [4] * 4)
EXPECTED["module"] = (2, [8, 16], [16, 8])
ALL_CASES = list(EXPECTED)


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("case", ALL_CASES)
def test_tokens_match_declared_metadata(case, hub_dir, images):
    torch.manual_seed(0)
    bb = _make(case, hub_dir)
    n, widths, grids = EXPECTED[case]
    assert bb.layer_names == [str(i) for i in range(n)]
    assert bb.widths == widths and [g[0] for g in bb.grid_sizes] == grids
    assert not bb.training and not any(p.requires_grad for p in bb.parameters())
    local, glob = bb.get_tokens(images)  # 48 px in: resized to each backbone's own input size
    assert list(local) == bb.layer_names and list(glob) == bb.layer_names
    for name, w, g in zip(bb.layer_names, widths, bb.grid_sizes):
        assert local[name].shape == (2, w, *g) and local[name].dtype == torch.float32
        assert glob[name].shape == (2, w) and torch.isfinite(glob[name]).all()
    # a subset stops early but gives the same numbers as the full pass
    sub = list(dict.fromkeys([bb.layer_names[0], bb.layer_names[-2]]))
    l2, g2 = bb.get_tokens(images, layers=sub)
    assert list(l2) == sub
    for s in sub:
        torch.testing.assert_close(l2[s], local[s])
        torch.testing.assert_close(g2[s], glob[s])


@pytest.mark.parametrize("case", ALL_CASES)
def test_layer_selection_prunes_and_keeps_values(case, hub_dir, images):
    torch.manual_seed(0)
    full = _make(case, hub_dir)
    torch.manual_seed(0)
    part = _make(case, hub_dir, layers=[0, -2])
    n = EXPECTED[case][0]
    assert part.layer_names == sorted({"0", str(n - 2)})
    assert sum(p.numel() for p in part.parameters()) <= sum(p.numel() for p in full.parameters())
    lf, gf = full.get_tokens(images)
    lp, gp = part.get_tokens(images)
    for name in part.layer_names:
        torch.testing.assert_close(lp[name], lf[name])
        torch.testing.assert_close(gp[name], gf[name])
    assert part.fingerprint != full.fingerprint


def test_global_token_is_cls_for_vits_and_mean_for_cnns_and_sam(images):
    torch.manual_seed(0)
    vit = create_backbone("timm:vit_tiny_patch16_224-random", image_size=64, layers=[3])
    local, glob = vit.get_tokens(images)
    assert not torch.allclose(glob["3"], local["3"].mean((2, 3)), atol=1e-3)
    cnn_and_sam = (create_backbone("timm:resnet18-random", image_size=64, layers=[-1]),
                   create_backbone("sam-vit-b-random", layers=[-1], **SAM_SMALL))
    for bb in cnn_and_sam:
        local, glob = bb.get_tokens(images)
        name = bb.layer_names[-1]
        torch.testing.assert_close(glob[name], local[name].mean((2, 3)))


def test_normalisation_is_each_backbones_own():
    clip = create_backbone("open_clip:custom-random", vision_cfg=OPEN_CLIP_SMALL)
    assert clip.mean == pytest.approx(CLIP_MEAN) and clip.std == pytest.approx(CLIP_STD)
    res = create_backbone("timm:resnet18-random", image_size=32)
    assert res.mean == pytest.approx(IMAGENET_MEAN) and res.std == pytest.approx(IMAGENET_STD)
    eva = create_backbone("timm:eva02_tiny_patch14_224-random", image_size=28, layers=1)  # a CLIP-normalised timm model
    assert eva.mean == pytest.approx(CLIP_MEAN)
    gray = torch.full((1, 3, 32, 32), 0.5)
    for bb in (clip, res):
        x = bb.prepare(gray)
        want = (0.5 - torch.tensor(bb.mean)) / torch.tensor(bb.std)
        torch.testing.assert_close(x[0, :, 0, 0], want)
    assert not torch.allclose(clip.prepare(gray)[0, :, 0, 0], res.prepare(gray)[0, :, 0, 0])


def test_fingerprint_tracks_weights_layers_and_input_size():
    a = create_backbone("brainnet-tiny-random", seed=0)
    assert a.fingerprint == create_backbone("brainnet-tiny-random", seed=0).fingerprint
    assert a.fingerprint != create_backbone("brainnet-tiny-random", seed=1).fingerprint
    assert a.fingerprint != create_backbone("brainnet-tiny-random", seed=0, layers=2).fingerprint
    assert a.fingerprint != create_backbone("brainnet-tiny-random", seed=0, image_size=96).fingerprint
    assert len(a.fingerprint) == 64


@pytest.mark.parametrize("case", ["tiny_random", "open_clip", "sam", "hub", "resnet18"])
def test_weights_path_round_trip(case, hub_dir, tmp_path, images):
    torch.manual_seed(1)
    if case == "resnet18":
        import timm

        src = timm.create_model("resnet18")
        sd = src.state_dict()
        ref = create_backbone("timm:resnet18-random", image_size=64)
        ref.model.load_state_dict({k: v for k, v in sd.items() if k in ref.model.state_dict()})
    else:
        ref = _make(case, hub_dir)
        inner = {"tiny_random": "net", "open_clip": "visual", "sam": "encoder", "hub": "model"}[case]
        # a fresh full-size module of the same kind: save its state_dict (what users have on disk)
        torch.manual_seed(1)
        full = _make(case, hub_dir)
        sd = getattr(full, inner).state_dict()
        if case == "sam":
            sd = {"image_encoder." + k: v for k, v in sd.items()} | {
                "image_encoder.neck.0.weight": torch.zeros(256, 32, 1, 1),
                "image_encoder.neck.1.weight": torch.ones(256),
                "image_encoder.neck.1.bias": torch.zeros(256),
                "image_encoder.neck.2.weight": torch.zeros(256, 256, 3, 3),
                "image_encoder.neck.3.weight": torch.ones(256),
                "image_encoder.neck.3.bias": torch.zeros(256),
            }
    path = tmp_path / "w.pt"
    torch.save(sd, path)
    seed = {"seed": 5} if case == "tiny_random" else {}  # tiny-random seeds itself
    torch.manual_seed(99)  # different random init: only the file can make outputs equal
    other = (_make(case, hub_dir, **seed) if case != "resnet18"
             else create_backbone("timm:resnet18-random", image_size=64))
    torch.manual_seed(99)
    loaded = _make(case, hub_dir, weights=str(path), **seed) if case != "resnet18" else create_backbone(
        "timm:resnet18", image_size=64, weights=str(path))
    lr, _ = ref.get_tokens(images)
    ll, _ = loaded.get_tokens(images)
    lo, _ = other.get_tokens(images)
    last = ref.layer_names[-1]
    torch.testing.assert_close(ll[last], lr[last])
    assert not torch.allclose(lo[last], lr[last])
    assert loaded.fingerprint == ref.fingerprint != other.fingerprint


def test_weights_that_do_not_fit_raise_clearly(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"foo.weight": torch.zeros(3)}, path)
    with pytest.raises(WeightsUnavailableError, match="missing"):
        create_backbone("brainnet-tiny-random", weights=str(path))
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        create_backbone("brainnet-tiny-random", weights=str(tmp_path / "nope.pt"))


@pytest.mark.parametrize(
    "name,kw",
    [
        ("timm:resnet18", {}),
        ("clip-vit-b-16", {}),
        ("sam-vit-b", {}),
        ("dinov2-vitb14", {}),
    ],
)
def test_published_weights_offline_fail_at_once(name, kw, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    t0 = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match="weights="):
        create_backbone(name, **kw)  # published weights are the default
    assert time.perf_counter() - t0 < 10.0


def test_local_hub_published_offline_fails_clearly(hub_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINNET_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsUnavailableError):
        create_backbone("dinov2-vits14", repo=str(hub_dir), source="local")


def test_registry_and_layer_rules():
    names = list_backbones()
    expected_names = ("brainnet-tiny", "brainnet-tiny-random", "clip-vit-b-16", "clip-vit-l-14", "sam-vit-b",
                      "dinov2-vitb14", "timm:<model>")
    for n in expected_names:
        assert n in names
    assert list_backbones("sam-*") == ["sam-vit-b", "sam-vit-h", "sam-vit-l"]
    with pytest.raises(ValueError, match="brainnet-tiny"):
        create_backbone("brainnet-tinyy")
    assert resolve_layer_indices(5, None) == [0, 1, 2, 3, 4]
    assert resolve_layer_indices(5, 2) == [3, 4]
    assert resolve_layer_indices(5, [-1, 0, 4]) == [0, 4]
    for bad in (0, 6, [5], [-6], []):
        with pytest.raises(ValueError):
            resolve_layer_indices(5, bad)
    with pytest.raises(TypeError):
        resolve_layer_indices(5, "2")


def test_bad_images_raise():
    bb = create_backbone("brainnet-tiny-random")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        bb.get_tokens(torch.rand(3, 64, 64))
    with pytest.raises(TypeError, match="float"):
        bb.get_tokens(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="not computed"):
        create_backbone("brainnet-tiny-random", layers=[0]).get_tokens(torch.rand(1, 3, 64, 64), layers=["3"])


def test_frozen_backbone_stays_eval_inside_training_module():
    bb = create_backbone("brainnet-tiny-random")
    parent = nn.Sequential(bb)
    parent.train()
    assert not bb.training
    bb.unfreeze().train()
    assert bb.training and all(p.requires_grad for p in bb.parameters())


def test_module_wrapper_tokens_fn_and_hooks_agree(images):
    net = SmallCNN()

    def tokens_fn(m, x):
        a = m.c1(x)
        b = m.c2(a)
        return {"a": a, "b": b}, {"a": a.mean((2, 3)), "b": b.mean((2, 3))}

    hooked = wrap_module(net, hook_layers=["c1", "c2"], input_size=32)
    fn = wrap_module(net, tokens_fn=tokens_fn, input_size=32)
    lh, gh = hooked.get_tokens(images)
    lf, gf = fn.get_tokens(images)
    for (_kh, vh), (_kf, vf) in zip(lh.items(), lf.items()):
        torch.testing.assert_close(vh, vf)
    with pytest.raises(ValueError, match="not found"):
        wrap_module(net, hook_layers=["nope"], input_size=32)


def _scene_probe_accuracy(bb, n_train=300, n_test=200):
    """Linear (ridge) probe of category presence from the last layer's global token."""
    from brainnet.data.mini.scenes import draw_scene

    rng = np.random.default_rng(123)
    imgs, ys = [], []
    for _ in range(n_train + n_test):
        img, objs = draw_scene(rng, 64)
        y = np.zeros(4)
        for o in objs:
            y[o.category] = 1
        imgs.append(img), ys.append(y)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        _, glob = bb.get_tokens(x)
    f = glob[bb.layer_names[-1]].numpy()
    f = (f - f[:n_train].mean(0)) / (f[:n_train].std(0) + 1e-6)
    f = np.c_[f, np.ones(len(f))]
    y = np.stack(ys)
    w = np.linalg.solve(f[:n_train].T @ f[:n_train] + 10.0 * np.eye(f.shape[1]), f[:n_train].T @ y[:n_train])
    return ((f[n_train:] @ w > 0.5) == (y[n_train:] > 0.5)).mean()


@pytest.mark.skipif(not TINY_WEIGHTS.exists(), reason="brainnet-tiny weights not trained yet")
def test_shipped_tiny_backbone_beats_random_init():
    import hashlib

    record = json.loads(TINY_RECORD.read_text())
    assert record["weights_sha256"] == hashlib.sha256(TINY_WEIGHTS.read_bytes()).hexdigest()
    trained = create_backbone("brainnet-tiny")
    assert trained.widths == [24, 48, 96, 192]
    acc_trained = _scene_probe_accuracy(trained)
    acc_random = _scene_probe_accuracy(create_backbone("brainnet-tiny-random"))
    assert acc_trained > acc_random + 0.05, (acc_trained, acc_random)
    assert acc_trained > 0.8


def test_open_clip_sequence_first_layout_gives_same_tokens(images):
    """Older open_clip towers run the transformer sequence-first (LND); the adapter must handle both."""
    from open_clip.transformer import Transformer

    torch.manual_seed(0)
    bb = create_backbone("open_clip:custom-random", vision_cfg=OPEN_CLIP_SMALL)
    want_l, want_g = bb.get_tokens(images)
    old = bb.visual.transformer
    seq_first = Transformer(64, len(old.resblocks), 2, batch_first=False)
    seq_first.load_state_dict(old.state_dict())
    bb.visual.transformer = seq_first
    bb.batch_first = False
    got_l, got_g = bb.get_tokens(images)
    for name in bb.layer_names:
        torch.testing.assert_close(got_l[name], want_l[name], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_g[name], want_g[name], atol=1e-5, rtol=1e-5)


def test_clip_vit_b_16_metadata_without_weights():
    bb = create_backbone("clip-vit-b-16-random", layers=[2, 5, 8, 11])
    assert bb.layer_names == ["2", "5", "8", "11"] and bb.widths == [768] * 4
    assert bb.grid_sizes == [(14, 14)] * 4 and bb.input_size == 224
    assert len(bb.visual.transformer.resblocks) == 12
    assert bb.mean == pytest.approx(CLIP_MEAN)


def test_training_script_smoke_run_writes_loadable_weights_and_record(tmp_path):
    from scripts.train_default_backbone import main

    record = main(["--steps", "3", "--n-train", "32", "--n-val", "32", "--batch-size", "8", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "brainnet_tiny.json").read_text())
    assert saved["steps"] == 3 and saved["data"]["train"] == {"seed": 0, "count": 32}
    assert set(saved["held_out_metrics"]) >= {"presence_accuracy_mean", "presence_chance_mean", "localisation_accuracy"}
    assert saved["weights_sha256"] == record["weights_sha256"]
    bb = create_backbone("brainnet-tiny", weights=str(tmp_path / "brainnet_tiny.pt"))
    assert bb.fingerprint != create_backbone("brainnet-tiny-random").fingerprint
