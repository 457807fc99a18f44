"""Encoding models: shapes, switches, chunking, subject routing, configs and planted truth."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from brainnet.models.factortopy import FactorTopy, FactorTopyConfig
from brainnet.models.mem import (
    ABLATIONS,
    ANSWER_COLUMNS,
    MEMORY_COLUMNS,
    TIME_COLUMNS,
    MemConfig,
    MemModel,
    ablation_config,
    gather_memory,
)
from brainnet.models.posenc import normalize_sphere_coords, sinusoidal_encoding
from brainnet.models.readout import SubjectReadouts, VertexReadout, subject_key
from brainnet.models.replay import LagConfig, LagModel
from brainnet.models.selectors import LayerSelector, RetinaMapper, ScaleSelector, linear_decay, selector_regularizer
from brainnet.models.tokens import sample_maps


@pytest.fixture(autouse=True)
def _one_thread():
    """Training loops below are tiny; extra threads only fight over the shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sphere(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random points on a radius-100 sphere: coords (n, 3), hemi (n,), unit vectors (n, 3)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, 3, generator=g)
    u = u / u.norm(dim=1, keepdim=True)
    hemi = (torch.rand(n, generator=g) > 0.5).long()
    return u * 100, hemi, u


def randomize(model: torch.nn.Module, std: float = 0.3, seed: int = 0) -> None:
    """Replace every parameter by noise (zero-initialised layers would hide dependencies)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def tokens(channels, b=3, size=8, seed=0, dtype=torch.float16):
    g = torch.Generator().manual_seed(seed)
    local = {str(i): torch.randn(b, c, size, size, generator=g).to(dtype) for i, c in enumerate(channels)}
    glob = {str(i): torch.randn(b, c, generator=g).to(dtype) for i, c in enumerate(channels)}
    return local, glob


# ---------------------------------------------------------------- posenc / selectors / readout
def test_posenc_layout_and_shapes():
    coords, hemi, _ = sphere(400)
    pos = normalize_sphere_coords(coords, hemi)
    assert pos.shape == (400, 3) and pos.dtype == torch.float32
    assert pos.min() >= 0 and pos.max() <= 100.0 + 1e-4
    assert pos[:, 0].max() - pos[:, 0].min() > 90  # longest axis spans ~100 steps
    assert pos[hemi == 0, 0].max() < pos[hemi == 1, 0].min()  # hemispheres do not overlap
    pe = sinusoidal_encoding(pos, n_freqs=32)
    assert pe.shape == (400, 192)
    assert torch.allclose(pe[:, :32] ** 2 + pe[:, 32:64] ** 2, torch.ones(400, 32), atol=1e-5)
    with pytest.raises(ValueError):
        normalize_sphere_coords(coords[:, :2], hemi)
    with pytest.raises(ValueError):
        normalize_sphere_coords(coords, hemi + 2)  # 0 lh, 1 rh, 2 voxels: 3 is no unit kind


def test_selectors_start_neutral_and_regularizer():
    pe = torch.randn(50, 24)
    retina, layers, scale = RetinaMapper(24, 16, jitter=0.1), LayerSelector(24, 4, 16), ScaleSelector(24, 16)
    assert torch.equal(retina.positions(pe), torch.zeros(50, 2))
    assert torch.allclose(layers.layer_weights(pe), torch.full((50, 4), 0.25))
    assert torch.allclose(scale.scale(pe), torch.full((50,), 0.5))
    retina.train()
    assert retina(pe).abs().max() > 0  # jitter in training
    retina.eval()
    assert torch.equal(retina(pe), torch.zeros(50, 2))
    uniform = torch.full((10, 4), 0.25)
    onehot = F.one_hot(torch.arange(10) % 4, 4).float()
    assert selector_regularizer(uniform, torch.full((10,), 0.5)).item() == pytest.approx(-1.0)
    assert selector_regularizer(onehot, torch.ones(10)).item() == pytest.approx(0.25, abs=1e-6)
    assert linear_decay(0, 0.1, 2000) == pytest.approx(0.1)
    assert linear_decay(1000, 0.1, 2000) == pytest.approx(0.05)
    assert linear_decay(5000, 0.1, 2000) == 0.0


def test_readout_shared_part_subset_and_routing():
    ro = VertexReadout(30, 12)
    feats, shared = torch.randn(4, 30, 8), torch.randn(4, 4)
    full = ro(torch.cat([feats, shared[:, None].expand(4, 30, 4)], dim=2))
    assert torch.allclose(ro(feats, shared=shared), full, atol=1e-5)
    idx = torch.tensor([3, 7, 29])
    assert torch.allclose(ro(feats[:, idx], idx, shared=shared), full[:, idx], atol=1e-5)
    with pytest.raises(ValueError):
        ro(feats)  # 8 != 12
    readouts = SubjectReadouts({"subj01": 5, "subj02": 9}, dim=3)
    assert readouts("subj02", torch.randn(2, 3)).shape == (2, 9)
    with pytest.raises(KeyError):
        readouts("subj03", torch.randn(2, 3))
    assert subject_key(["subj01", "subj01"]) == "subj01"
    with pytest.raises(ValueError):
        subject_key(["subj01", "subj02"])


def test_readout_init_is_fan_in_scaled_unless_set():
    torch.manual_seed(0)
    for dim in (8, 96):
        w = VertexReadout(4000, dim).weight
        assert w.std().item() == pytest.approx((3 * dim) ** -0.5, rel=0.03)
    assert VertexReadout(4000, 8, init_std=1.0).weight.std().item() == pytest.approx(1.0, rel=0.03)
    assert not SubjectReadouts({"subj01": 5}, dim=3, init_std=0.0)["subj01"].weight.any()
    assert FactorTopyConfig().readout_init_std is None and LagConfig().readout_init_std is None
    assert MemConfig().readout_init_std == 1.0  # measured: the mean readout needs weights of order 1
    with pytest.raises(ValueError, match="init_std"):
        VertexReadout(5, 3, init_std=-1.0)


def test_sample_maps_pixel_centre_convention():
    maps = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    # pixel (row 1, col 3) has its centre at x = (2*3+1)/4 - 1, y = (2*1+1)/4 - 1 (x right, y down)
    xy = torch.tensor([[7 / 4 - 1, 3 / 4 - 1]])
    out = sample_maps(maps, xy)
    assert out.shape == (1, 1, 2)
    assert torch.allclose(out[0, 0], maps[0, :, 1, 3])


@pytest.mark.parametrize("align_corners", [False, True])
def test_sample_maps_equals_grid_sample_values_and_gradients(align_corners):
    """The matmul sampler matches F.grid_sample (bilinear, border padding) in values and in the
    gradients to the maps and to the positions, points outside [-1, 1] included; the fused
    layer-mixing sampler equals sampling then mixing."""
    import torch.nn.functional as F

    from brainnet.models.tokens import sample_mixed_maps

    g = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 8, 5, 7, generator=g, dtype=torch.float64)
    xy = torch.rand(50, 2, generator=g, dtype=torch.float64) * 2.4 - 1.2
    m1, p1 = maps.clone().requires_grad_(), xy.clone().requires_grad_()
    m2, p2 = maps.clone().requires_grad_(), xy.clone().requires_grad_()
    ours = sample_maps(m1, p1, align_corners)
    ref = F.grid_sample(m2, p2[None, None].expand(3, 1, -1, 2), mode="bilinear", padding_mode="border",
                        align_corners=align_corners)[:, :, 0].transpose(1, 2)
    torch.testing.assert_close(ours, ref)
    up = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    (ours * up).sum().backward()
    (ref * up).sum().backward()
    torch.testing.assert_close(m1.grad, m2.grad)
    torch.testing.assert_close(p1.grad, p2.grad)
    lw = torch.softmax(torch.randn(50, 2, generator=g, dtype=torch.float64), -1)
    mixed = sample_mixed_maps(maps, xy, lw, align_corners)
    expect = torch.einsum("bnld,nl->bnd", sample_maps(maps, xy, align_corners).reshape(3, 50, 2, 4), lw)
    torch.testing.assert_close(mixed, expect)
    with pytest.raises(ValueError, match="layers"):
        sample_mixed_maps(maps, xy, torch.ones(50, 3, dtype=torch.float64))


# ---------------------------------------------------------------- FactorTopy
def _factortopy(channels=(6, 10, 4), subjects=(("subj01", 120),), **kw):
    coords, hemi = {}, {}
    for i, (s, n) in enumerate(subjects):
        coords[s], hemi[s], _ = sphere(n, seed=i)
    cfg = FactorTopyConfig(in_channels=channels, bottleneck=16, n_freqs=8, mlp_hidden=16, **kw)
    return FactorTopy(cfg, coords, hemi)


def test_factortopy_shapes_chunking_and_subset():
    model = _factortopy(chunk_size=None)
    randomize(model)
    model.eval()
    local, glob = tokens((6, 10, 4), size=12)  # resized to the 8x8 grid inside
    batch = {"local": local, "global": glob, "subject": "subj01"}
    out = model(batch)
    assert out.shape == (3, 120) and out.dtype == torch.float32 and torch.isfinite(out).all()
    chunked = _factortopy(chunk_size=7)
    chunked.load_state_dict(model.state_dict())
    chunked.eval()
    assert torch.allclose(chunked(batch), out, atol=1e-5)
    idx = torch.tensor([5, 0, 119, 42])
    assert torch.allclose(model(batch, vertex_idx=idx), out[:, idx], atol=1e-5)
    assert torch.allclose(chunked(batch, vertex_idx=torch.arange(100, 120)), out[:, 100:], atol=1e-5)
    assert model.positions("subj01").shape == (120, 2)
    assert model.layer_weights("subj01").shape == (120, 3)
    assert model.scale("subj01").shape == (120,)
    assert model.regularizer("subj01", idx).ndim == 0
    list_batch = {"local": list(local.values()), "global": list(glob.values()), "subject": "subj01"}
    assert torch.allclose(model(list_batch), out)


def test_factortopy_bad_inputs():
    model = _factortopy()
    local, glob = tokens((6, 10, 4))
    with pytest.raises(ValueError, match="channels"):
        model({"local": {**local, "1": local["0"]}, "global": glob, "subject": "subj01"})
    with pytest.raises(ValueError, match="layers"):
        model({"local": list(local.values())[:2], "global": glob, "subject": "subj01"})
    with pytest.raises(KeyError):
        model({"local": local, "global": glob, "subject": "subj09"})
    with pytest.raises(ValueError):
        model({"local": local, "global": glob, "subject": "subj01"}, vertex_idx=torch.tensor([120]))
    with pytest.raises(ValueError):
        FactorTopyConfig(in_channels=())


def test_factortopy_multi_subject_routing_and_local_only():
    model = _factortopy(subjects=(("subj01", 50), ("subj02", 80)))
    randomize(model)
    model.eval()
    local, glob = tokens((6, 10, 4))
    b1 = {"local": local, "global": glob, "subject": "subj01"}
    b2 = {**b1, "subject": "subj02"}
    o1, o2 = model(b1), model(b2)
    assert o1.shape == (3, 50) and o2.shape == (3, 80)
    with torch.no_grad():
        model.readouts["subj02"].weight.add_(1.0)
    assert torch.equal(model(b1), o1) and not torch.allclose(model(b2), o2)
    local_only = _factortopy(use_scale=False)
    randomize(local_only)
    out = local_only({"local": local, "global": {}, "subject": "subj01"})
    assert out.shape == (3, 120)


def test_factortopy_config_round_trip():
    cfg = FactorTopyConfig(in_channels=(8, 16), layer_names=("a", "b"), grid_size=None, jitter=0.05)
    again = FactorTopyConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ValueError, match="unknown"):
        FactorTopyConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def _smooth_maps(n, c, size, g, sigma=1.5):
    k = torch.exp(-torch.arange(-3, 4.0) ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    x = torch.randn(n * c, 1, size, size, generator=g)
    x = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="reflect"), k.view(1, 1, 1, 7))
    x = F.conv2d(F.pad(x, (0, 0, 3, 3), mode="reflect"), k.view(1, 1, 7, 1))
    x = x.reshape(n, c, size, size)
    return (x - x.mean()) / x.std()


def test_factortopy_recovers_planted_position_and_layer():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n_vert, n_layers, ch, size, n_img = 200, 3, 8, 8, 384
    coords, hemi, u = sphere(n_vert, seed=0)
    xy_true = torch.stack([0.75 * u[:, 1], 0.75 * u[:, 2]], dim=1)  # smooth in space
    layer_true = (u[:, 0] > -0.35).long() + (u[:, 0] > 0.35).long()
    local = [_smooth_maps(n_img, ch, size, g) for _ in range(n_layers)]
    glob = [torch.randn(n_img, ch, generator=g) for _ in range(n_layers)]  # uninformative
    a = torch.randn(n_vert, ch, generator=g)
    y = 0.1 * torch.randn(n_img, n_vert, generator=g)
    for layer in range(n_layers):
        feat = (sample_maps(local[layer], xy_true) * a).sum(-1)  # (n_img, V)
        y += feat * (layer_true == layer).float()
    cfg = FactorTopyConfig(in_channels=(ch,) * n_layers, bottleneck=16, mlp_hidden=64,
                           reg_weight=0.1, reg_decay_steps=100, chunk_size=None)
    model = FactorTopy(cfg, {"s": coords}, {"s": hemi})
    readout = [p for n, p in model.named_parameters() if n.startswith("readouts")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("readouts")]
    opt = torch.optim.Adam([{"params": rest, "lr": 1e-2}, {"params": readout, "lr": 3e-2}])
    for step in range(300):
        ix = torch.randint(0, n_img, (32,), generator=g)
        batch = {"local": [x[ix] for x in local], "global": [x[ix] for x in glob], "subject": "s"}
        loss = F.mse_loss(model(batch), y[ix]) + model.regularizer_weight(step) * model.regularizer("s")
        opt.zero_grad()
        loss.backward()
        opt.step()
    pos = model.positions("s")
    for axis in range(2):
        r = torch.corrcoef(torch.stack([pos[:, axis], xy_true[:, axis]]))[0, 1]
        assert r >= 0.8, f"axis {axis}: r = {r:.3f}"
    hit = (model.layer_weights("s").argmax(1) == layer_true).float().mean()
    assert hit >= 0.8, f"layer hit rate {hit:.2f}"
    assert model.scale("s").mean() < 0.3  # the global tokens carry nothing: local wins


# ---------------------------------------------------------------- memory model
MEM_SMALL = dict(in_channels=(6, 5), width=8, conv_blocks=1, n_freqs=4, mlp_hidden=8, memory_dim=7,
                 n_memory_frames=5, frame_dim=4, time_dim=3, memory_hidden=8, memory_out=5,
                 t1_dim=4, behaviour_hidden=6, behaviour_out=3, dropout=0.0)


def _mem(config: MemConfig, subjects=(("subj01", 40),)) -> MemModel:
    coords, hemi = {}, {}
    for i, (s, n) in enumerate(subjects):
        coords[s], hemi[s], _ = sphere(n, seed=i)
    return MemModel(config, coords, hemi)


def _mem_batch(b=4, seed=0, subject="subj01", frames=6):
    g = torch.Generator().manual_seed(seed)
    local, glob = tokens((6, 5), b=b, seed=seed)
    valid = torch.ones(b, frames, dtype=torch.bool)
    valid[0, 3:] = False  # first trial near the run start
    return {"local": local, "global": glob, "subject": subject,
            "memory": torch.randn(b, frames, 7, generator=g) * valid[..., None],
            "memory_valid": valid, "behaviour": torch.randn(b, 35, generator=g),
            "memory_behaviour": torch.randn(b, frames, 35, generator=g)}


@pytest.mark.parametrize("name", ABLATIONS)
def test_mem_shapes_for_every_ablation(name):
    cfg = ablation_config(name, MemConfig(**MEM_SMALL))
    model = _mem(cfg)
    out = model(_mem_batch())
    assert out.shape == (4, 40) and out.dtype == torch.float32
    assert model.readouts["subj01"].dim == cfg.readout_dim
    if name == "baseline":
        assert cfg.readout_dim == cfg.width
        batch = _mem_batch()
        for key in ("memory", "memory_valid", "behaviour", "memory_behaviour"):
            del batch[key]
        assert model(batch).shape == (4, 40)  # the baseline needs the current image only


def _perturbed(batch, what: str, seed=1):
    g = torch.Generator().manual_seed(seed)
    new = dict(batch)
    if what in ("answer", "memory_c", "time"):
        cols = list({"answer": ANSWER_COLUMNS, "memory_c": MEMORY_COLUMNS, "time": TIME_COLUMNS}[what])
        for key in ("behaviour", "memory_behaviour"):
            x = batch[key].clone()
            x[..., cols] = torch.randn(x[..., cols].shape, generator=g)
            new[key] = x
    elif what == "memory_images":
        new["memory"] = batch["memory"] + torch.randn(batch["memory"].shape, generator=g)
    return new


@pytest.mark.parametrize("switch,what", [("use_answer", "answer"), ("use_memory_c", "memory_c"),
                                         ("use_time", "time"), ("use_memory_images", "memory_images")])
def test_mem_switches_really_remove_the_input(switch, what):
    batch = _mem_batch()
    changed = _perturbed(batch, what)
    for on in (True, False):
        model = _mem(MemConfig(**{**MEM_SMALL, switch: on}))
        randomize(model)
        model.eval()
        same = torch.allclose(model(batch), model(changed), atol=1e-6)
        assert same != on, f"{switch}={on}: output {'unchanged' if same else 'changed'}"


def test_mem_blank_frames_and_frame_count():
    model = _mem(MemConfig(**MEM_SMALL))
    randomize(model)
    model.eval()
    batch = _mem_batch()
    out = model(batch)
    blank = dict(batch, memory=batch["memory"].clone())
    blank["memory"][0, 3:] = 100.0  # blank slots of trial 0: content must not matter
    assert torch.allclose(model(blank), out, atol=1e-6)
    far = dict(batch, memory=batch["memory"].clone())
    far["memory"][:, 5] += 5.0  # frame T=-6 lies beyond n_memory_frames=5
    assert torch.allclose(model(far), out, atol=1e-6)
    near = dict(batch, memory=batch["memory"].clone())
    near["memory"][1:, 4] += 5.0  # frame T=-5 is used
    assert not torch.allclose(model(near), out, atol=1e-6)
    with pytest.raises(ValueError, match="memory"):
        model({k: v for k, v in batch.items() if k != "memory_valid"})
    with pytest.raises(ValueError):
        model(dict(batch, memory=batch["memory"][:, :3]))


def test_mem_chunking_subset_and_subjects():
    cfg = MemConfig(**MEM_SMALL, chunk_size=None)
    model = _mem(cfg, subjects=(("subj01", 40), ("subj02", 25)))
    randomize(model)
    model.eval()
    batch = _mem_batch()
    out = model(batch)
    chunked = _mem(MemConfig(**MEM_SMALL, chunk_size=6), subjects=(("subj01", 40), ("subj02", 25)))
    chunked.load_state_dict(model.state_dict())
    chunked.eval()
    assert torch.allclose(chunked(batch), out, atol=1e-5)
    idx = torch.tensor([39, 2, 17])
    assert torch.allclose(model(batch, vertex_idx=idx), out[:, idx], atol=1e-5)
    out2 = model(dict(batch, subject="subj02"))
    assert out2.shape == (4, 25)
    with torch.no_grad():
        model.memory_in["subj02"].weight.add_(1.0)  # subject-specific memory linear
    assert torch.equal(model(batch), out)
    assert not torch.allclose(model(dict(batch, subject="subj02")), out2)
    assert model.positions("subj02").shape == (25, 2)
    assert model.layer_weights("subj01").shape == (40, 2)
    assert model.regularizer("subj01").item() == pytest.approx(-1.0, abs=0.2)


def test_mem_config_round_trip_ablations_and_hooks():
    cfg = ablation_config("no_answer", MemConfig(**MEM_SMALL))
    assert not cfg.use_answer and cfg.use_time and cfg.use_memory_images
    assert MemConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    base = ablation_config("baseline")
    assert not (base.use_memory_images or base.use_behaviour)
    with pytest.raises(ValueError):
        ablation_config("no_everything")
    with pytest.raises(ValueError):
        MemConfig(n_memory_frames=40)
    legacy = {**cfg.to_dict(), "lora_rank": 0, "adaln_zero": False}  # configs saved when these were MemConfig fields
    assert MemConfig.from_dict(legacy) == cfg
    with pytest.raises(ValueError, match="unknown"):
        MemConfig.from_dict({**cfg.to_dict(), "lora_rank": 4})


def test_gather_memory():
    vectors = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 3)
    index = torch.tensor([[5, 4, 3, -1], [9, -1, 8, 7]])
    mem, valid = gather_memory(vectors, index, n_frames=3)
    assert mem.shape == (2, 3, 3)
    assert valid.tolist() == [[True, True, False], [False, True, True]]
    assert mem[:, :, 0].tolist() == [[4, 3, 0], [0, 8, 7]]
    with pytest.raises(ValueError):
        gather_memory(vectors, index, n_frames=4)
    with pytest.raises(ValueError):
        gather_memory(vectors, torch.tensor([[0, 10]]), n_frames=1)


def test_mem_with_memory_beats_without_on_planted_lag():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n_vert, n_img, n_trials, dim, lag, run = 60, 300, 600, 12, 3, 50
    coords, hemi, _ = sphere(n_vert)
    vectors = torch.randn(n_img, dim, generator=g)
    images = torch.randint(0, n_img, (n_trials,), generator=g)
    slot = torch.arange(n_trials)
    back = slot[:, None] - torch.arange(33)[None]
    same_run = back >= (slot // run * run)[:, None]
    memory_index = torch.where(same_run, images[back.clamp(min=0)], torch.tensor(-1))
    local = [torch.randn(n_img, 4, 4, 4, generator=g) for _ in range(2)]
    glob = [torch.randn(n_img, 4, generator=g) for _ in range(2)]
    lag_vec, lag_ok = gather_memory(vectors, memory_index, n_frames=lag)
    y = lag_vec[:, -1] @ torch.randn(dim, n_vert, generator=g) / dim ** 0.5
    y = y + 0.3 * torch.randn(n_trials, n_vert, generator=g)
    behaviour = torch.randn(n_trials, 35, generator=g)
    train, val = torch.arange(0, 500), torch.arange(500, n_trials)

    def batch_of(ix):
        mem, valid = gather_memory(vectors, memory_index[ix], n_frames=6)
        return {"local": [x[images[ix]] for x in local], "global": [x[images[ix]] for x in glob],
                "memory": mem, "memory_valid": valid, "behaviour": behaviour[ix], "subject": "s"}

    base = MemConfig(in_channels=(4, 4), width=8, conv_blocks=1, n_freqs=4, mlp_hidden=16,
                     memory_dim=dim, n_memory_frames=6, frame_dim=8, time_dim=4, memory_hidden=32,
                     memory_out=16, t1_dim=8, behaviour_hidden=8, behaviour_out=4, dropout=0.0,
                     grid_size=None)
    scores = {}
    for name in ("full", "no_memory_images"):
        torch.manual_seed(1)
        model = MemModel(ablation_config(name, base), {"s": coords}, {"s": hemi})
        readout = [p for n, p in model.named_parameters() if n.startswith("readouts")]
        rest = [p for n, p in model.named_parameters() if not n.startswith("readouts")]
        opt = torch.optim.Adam([{"params": rest, "lr": 3e-3}, {"params": readout, "lr": 3e-2}])
        for _ in range(150):
            ix = train[torch.randint(0, len(train), (32,), generator=g)]
            loss = F.mse_loss(model(batch_of(ix)), y[ix])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            pred = model(batch_of(val))
        scores[name] = torch.nan_to_num(torch.stack(
            [torch.corrcoef(torch.stack([pred[:, v], y[val, v]]))[0, 1] for v in range(n_vert)])).mean()
    assert scores["full"] > 0.2, scores
    assert scores["full"] > scores["no_memory_images"] + 0.15, scores


# ---------------------------------------------------------------- lag model
def test_lag_model_shapes_subset_valid_and_fit():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    cfg = LagConfig(in_dims=(5, 3), hidden=16, out_dim=8, dropout=0.0)
    model = LagModel(cfg, {"subj01": 30, "subj02": 12})
    x = [torch.randn(200, 5, generator=g), torch.randn(200, 3, generator=g)]
    y = torch.cat(x, 1) @ torch.randn(8, 30, generator=g)
    batch = {"vectors": x, "subject": "subj01"}
    assert model(batch).shape == (200, 30)
    assert model({"vectors": x, "subject": "subj02"}).shape == (200, 12)
    idx = torch.tensor([4, 29])
    assert torch.allclose(model(batch, vertex_idx=idx), model(batch)[:, idx], atol=1e-6)
    valid = torch.zeros(200, dtype=torch.bool)
    blank = model(dict(batch, valid=valid))
    assert torch.allclose(blank, model.readouts["subj01"].bias.expand(200, 30))
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(300):
        loss = F.mse_loss(model(batch), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * y.var().item()
    assert LagConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        model({"vectors": [x[0], x[0]], "subject": "subj01"})


# ---------------------------------------------------------------- interface, registry, configs
#: MemConfig / FactorTopyConfig dicts as saved (checkpoint "model_config") before SelectorConfig existed.
OLD_MEM_DICT = {
    "in_channels": [4, 8], "layer_names": [], "width": 8, "conv_kernel": 3, "conv_blocks": 1, "grid_size": 8,
    "n_freqs": 4, "span": 100.0, "sphere_radius": None, "mlp_hidden": 16, "mlp_layers": 2, "jitter": 0.0,
    "align_corners": False, "use_memory_images": True, "n_memory_frames": 5, "memory_dim": 6, "separate_t1": True,
    "frame_dim": 4, "time_dim": 4, "memory_hidden": 16, "memory_out": 8, "t1_dim": 4, "use_answer": True,
    "use_memory_c": True, "use_time": False, "behaviour_hidden": 8, "behaviour_out": 4, "dropout": 0.1,
    "chunk_size": 25600, "readout_init_std": 1.0, "reg_weight": 0.0001, "reg_decay_steps": 0,
    "lora_rank": 0, "adaln_zero": False}
OLD_FACTORTOPY_DICT = {
    "in_channels": [8, 16], "layer_names": ["a", "b"], "bottleneck": 16, "grid_size": 8, "n_freqs": 8, "span": 100.0,
    "sphere_radius": None, "mlp_hidden": 16, "mlp_layers": 2, "jitter": 0.0, "align_corners": False,
    "use_scale": True, "chunk_size": 25600, "readout_init_std": 1.0, "reg_weight": 0.1, "reg_decay_steps": 2000}


def test_selector_config_is_shared_and_old_flat_dicts_load():
    import dataclasses

    from brainnet.models import SelectorConfig

    shared = {f.name for f in dataclasses.fields(SelectorConfig)}
    for cls in (FactorTopyConfig, MemConfig):
        assert issubclass(cls, SelectorConfig) and shared <= {f.name for f in dataclasses.fields(cls)}
    mem = MemConfig.from_dict(OLD_MEM_DICT)
    assert mem.width == 8 and mem.in_channels == (4, 8) and not mem.use_time and mem.reg_decay_steps == 0
    assert mem.selector == SelectorConfig(in_channels=(4, 8), n_freqs=4, mlp_hidden=16, reg_weight=1e-4,
                                          reg_decay_steps=0, readout_init_std=1.0)  # the saved value, kept
    ft = FactorTopyConfig.from_dict(OLD_FACTORTOPY_DICT)
    assert ft.layer_names == ("a", "b") and ft.bottleneck == 16
    # the saved form is unchanged but for the later token options, whose defaults are the old behaviour
    assert ft.to_dict() == {**OLD_FACTORTOPY_DICT, "token_resize": "area", "padding": "border"}
    # each model keeps its own defaults of the shared fields
    assert (MemConfig().reg_weight, MemConfig().n_layers) == (1e-4, 4)
    assert (FactorTopyConfig().reg_weight, FactorTopyConfig().n_layers) == (0.1, 12)
    with pytest.raises(ValueError, match="grid_size"):
        MemConfig(grid_size=0)  # validated once, in SelectorConfig
    with pytest.raises(ValueError, match="unknown config keys"):
        MemConfig.from_dict({**OLD_MEM_DICT, "adaln_zero": True})


def _lag():
    return LagModel(LagConfig(in_dims=(5, 3), hidden=16, out_dim=8, dropout=0.0), {"subj01": 30})


def test_every_model_is_an_encoding_model():
    from torch import nn

    from brainnet.models import EncodingModel, check_encoding_model, missing_members

    ft, mem, lag = _factortopy(), _mem(MemConfig(**MEM_SMALL)), _lag()
    for model in (ft, mem, lag):
        assert isinstance(model, EncodingModel) and missing_members(model) == []
        v = model.n_vertices("subj01")
        assert list(model.subjects) == ["subj01"]
        assert model.positions("subj01").shape == (v, 2) and model.scale("subj01").shape == (v,)
        assert model.layer_weights("subj01").shape[0] == v
        assert model.regularizer("subj01").ndim == 0
    # what a model lacks is NaN (maps) or zero (regulariser), never silently made up
    assert torch.isnan(mem.scale("subj01")).all() and not torch.isnan(ft.scale("subj01")).any()
    assert torch.isnan(lag.positions("subj01")).all() and torch.isnan(lag.layer_weights("subj01")).all()
    assert lag.layer_weights("subj01").shape == (30, 2)
    assert lag.regularizer("subj01").item() == 0.0 and lag.regularizer_weight(0) == 0.0
    assert mem.regularizer_weight(10_000) == pytest.approx(1e-4)  # constant (reg_decay_steps = 0)
    assert ft.regularizer_weight(0) == pytest.approx(0.1) and ft.regularizer_weight(2000) == 0.0
    assert not isinstance(nn.Linear(2, 2), EncodingModel)
    with pytest.raises(TypeError, match="positions"):
        check_encoding_model(nn.Linear(2, 2))


def test_model_registry_builds_the_same_models():
    from brainnet.models import create_model, list_models, model_entry, register_model

    assert {"mem", "factortopy", "lag"} <= set(list_models())
    assert list_models("fac*") == ["factortopy"]
    assert {"factortopy", "mem"} <= set(list_models(configurable=True)) and "lag" not in list_models(configurable=True)
    coords, hemi, _ = sphere(40)
    cfg = ablation_config("no_time", MemConfig(**MEM_SMALL))
    torch.manual_seed(3)
    direct = MemModel(cfg, {"subj01": coords}, {"subj01": hemi}).eval()
    torch.manual_seed(3)
    made = create_model("mem", cfg.to_dict(), {"subj01": coords}, {"subj01": hemi}).eval()  # a dict works too
    assert isinstance(made, MemModel) and made.config == cfg
    batch = _mem_batch()
    assert torch.equal(made(batch), direct(batch))  # same seed -> same model
    lag = create_model("lag", LagConfig(in_dims=(3,)), {"subj01": coords}, {"subj01": hemi})
    assert lag.n_vertices("subj01") == 40
    assert isinstance(create_model("factortopy", None, {"s": coords}, {"s": hemi}).config, FactorTopyConfig)
    with pytest.raises(ValueError, match="factortopy"):
        create_model("factortop", None, {"s": coords}, {"s": hemi})
    with pytest.raises(TypeError, match="MemConfig"):
        create_model("mem", FactorTopyConfig(), {"s": coords}, {"s": hemi})
    with pytest.raises(ValueError, match="already registered"):
        register_model("mem", FactorTopy, FactorTopyConfig)

    class Features:
        in_channels, layer_names, memory_dim = (6, 5), ("a", "b"), 7

    got = model_entry("mem").configure(Features(), {"width": 8}, "baseline")
    assert got.layer_names == ("a", "b") and got.memory_dim == 7 and got.width == 8 and not got.use_memory_images
    with pytest.raises(ValueError, match="ablations"):
        model_entry("factortopy").configure(Features(), {}, "no_time")
    assert model_entry("lag").configure is None
    assert model_entry("mem").config_default("n_memory_frames") == 32
    assert model_entry("factortopy").config_default("n_memory_frames") is None
