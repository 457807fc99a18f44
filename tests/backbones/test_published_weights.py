"""Published weights unless told otherwise: a named published backbone never comes back random.

Before, ``create_backbone("clip-vit-b-16")`` built a randomly initialised CLIP without a word
(``pretrained`` defaulted to False); these tests fail on that behaviour.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from brainnet.backbones import create_backbone, wrap_module
from brainnet.backbones.base import state_dict_digest
from brainnet.backbones.tiny import TINY_WEIGHTS
from brainnet.cache import TokenCache
from brainnet.errors import WeightsUnavailableError

torch.set_num_threads(1)

OPEN_CLIP_SMALL = {"layers": 2, "width": 64, "head_width": 32, "patch_size": 16, "image_size": 32, "embed_dim": 32}
SAM_SMALL = dict(image_size=32, embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=2)


@pytest.mark.parametrize("name", ["clip-vit-b-16", "clip-vit-l-14", "open_clip:ViT-B-16", "vit-b-16-imagenet",
                                  "timm:test_vit"])
def test_named_published_backbone_offline_raises_instead_of_random(name, offline):
    with pytest.raises(WeightsUnavailableError, match="offline"):
        create_backbone(name)


def test_published_name_offline_raises_through_resolve_backbone(offline):
    """The notebooks' path: no fallback to a random tower for a published name, and no warning either
    (only the shipped brainnet-tiny falls back to its random twin)."""
    import warnings

    from brainnet.training.features import resolve_backbone

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback would warn
        with pytest.raises(WeightsUnavailableError):
            resolve_backbone("clip-vit-b-16")
        with pytest.raises(WeightsUnavailableError):
            resolve_backbone("clip-vit-b-16", fallback="brainnet-tiny-random")


def test_published_default_loads_the_published_checkpoint(offline, monkeypatch):
    """A cached published checkpoint (timm's test_vit in a Hugging Face cache) is what the default loads."""
    import timm
    from safetensors.torch import save_file

    repo = offline / "hf" / "models--timm--test_vit.r160_in1k"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    torch.manual_seed(7)
    published = timm.create_model("test_vit")
    save_file(published.state_dict(), str(snap / "model.safetensors"))
    torch.manual_seed(8)
    bb = create_backbone("timm:test_vit", layers=[0])
    assert bb.weights_id == "timm:test_vit.r160_in1k"
    want = published.state_dict()
    for k, v in bb.model.state_dict().items():
        torch.testing.assert_close(v, want[k])
    rand = create_backbone("timm:test_vit-random", layers=[0])
    assert rand.weights_id.startswith("random:") and rand.fingerprint != bb.fingerprint


def test_local_checkpoint_loads_and_is_named_by_its_hash(tmp_path):
    torch.manual_seed(0)
    src = create_backbone("open_clip:custom-random", vision_cfg=OPEN_CLIP_SMALL)
    path = tmp_path / "clip.pt"
    torch.save(src.visual.state_dict(), path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    torch.manual_seed(1)
    loaded = create_backbone("open_clip:custom", vision_cfg=OPEN_CLIP_SMALL, weights=path)
    torch.manual_seed(1)
    other = create_backbone("open_clip:custom", vision_cfg=OPEN_CLIP_SMALL, weights="random")
    assert loaded.weights_id == f"file:{sha[:12]}"
    assert state_dict_digest(loaded) == state_dict_digest(src) != state_dict_digest(other)
    assert loaded.fingerprint == src.fingerprint != other.fingerprint  # the weights enter by content
    # a checkpoint wins over a "-random" name (as for brainnet-tiny-random)
    assert create_backbone("open_clip:custom-random", vision_cfg=OPEN_CLIP_SMALL, weights=path).weights_id == \
        loaded.weights_id


def test_random_only_when_asked():
    # an architecture without published weights asks for a choice instead of drawing random ones
    with pytest.raises(ValueError, match="random"):
        create_backbone("open_clip:custom", vision_cfg=OPEN_CLIP_SMALL)
    with pytest.raises(ValueError, match="random"):
        create_backbone("sam-vit-b", **SAM_SMALL)
    with pytest.raises(ValueError, match="tag"):
        create_backbone("open_clip:ViT-B-32")  # several tags, none chosen
    with pytest.raises(TypeError, match="weights='random'"):
        create_backbone("brainnet-tiny", pretrained=False)
    # "-random" name and weights="random" are the same request
    torch.manual_seed(3)
    by_name = create_backbone("sam-vit-b-random", **SAM_SMALL)
    torch.manual_seed(3)
    by_arg = create_backbone("sam-vit-b", weights="random", **SAM_SMALL)
    assert by_name.weights_id == by_arg.weights_id and by_name.weights_id.startswith("random:")
    assert by_name.fingerprint == by_arg.fingerprint
    torch.manual_seed(4)
    assert create_backbone("sam-vit-b-random", **SAM_SMALL).weights_id != by_name.weights_id  # another draw
    # a registered random twin answers weights="random"
    assert create_backbone("brainnet-tiny", weights="random").fingerprint == \
        create_backbone("brainnet-tiny-random").fingerprint


@pytest.mark.skipif(not TINY_WEIGHTS.exists(), reason="brainnet-tiny weights not trained yet")
def test_identity_of_shipped_custom_and_cached_tokens(tmp_path):
    shipped = create_backbone("brainnet-tiny", image_size=16)
    assert shipped.weights_id == "shipped:" + hashlib.sha256(TINY_WEIGHTS.read_bytes()).hexdigest()[:12]
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2, 1))
    custom = wrap_module(net, hook_layers=["0"], input_size=16)
    assert custom.weights_id == "custom:" + state_dict_digest(custom).split(":")[1][:12]
    cache = TokenCache(shipped, pool=2, storage="memmap", cache_dir=tmp_path)
    cache.fill(np.zeros((2, 16, 16, 3), np.uint8), ids=[0, 1])
    header = json.loads((cache.path / "header.json").read_text())
    assert header["weights"] == shipped.weights_id
