"""A TrainConfig / build_features naming a published backbone never trains on a random tower offline."""

from __future__ import annotations

import pytest

from brainnet.errors import WeightsUnavailableError
from brainnet.training.config import TrainConfig

from _mini_cache import prepared_tiny


def test_published_backbone_offline_raises_in_build_features_and_fit(tmp_path_factory, offline):
    from brainnet.training.features import build_features
    from brainnet.training.fit import fit_encoder

    root = prepared_tiny(tmp_path_factory)
    with pytest.raises(WeightsUnavailableError):
        build_features(root, "clip-vit-b-16")
    out = offline / "run"
    with pytest.raises(WeightsUnavailableError):
        fit_encoder(TrainConfig(data_dir=str(root), backbone="clip-vit-b-16", out_dir=str(out)))
    assert not out.exists()  # nothing written before the weights are found
