"""Model config: defaults of the released model, validation, round trip, supervision targets."""

from __future__ import annotations

import pytest

from model.config import ModelConfig, target_frames
from storage.errors import FormatError


def test_defaults_are_the_released_model() -> None:
    config = ModelConfig()
    assert (config.seqlen, config.hidden_size, config.n_layers, config.n_iter) == (16, 1024, 2, 3)
    assert config.mid_frame == 8
    assert (config.pose_forecast, config.residual, config.forecast_target) == (
        True,
        False,
        "current",
    )


@pytest.mark.parametrize(
    ("overrides", "frames"),
    [
        ({}, (8, 8, 8)),
        ({"forecast_target": "adjacent"}, (7, 9, 8)),
        ({"forecast_target": "none"}, (8,)),
        ({"pose_forecast": False}, (8,)),
        ({"pose_forecast": False, "all_frames": True}, tuple(range(16))),
    ],
)
def test_target_frames(overrides: dict, frames: tuple[int, ...]) -> None:
    assert target_frames(ModelConfig(**overrides)) == frames


def test_round_trip() -> None:
    config = ModelConfig(residual=True, forecast_target="adjacent", hidden_size=32)
    assert ModelConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"hiden_size": 3}, "hiden_size"),
        ({"forecast_target": "past"}, "forecast_target"),
        ({"n_layers": 0}, "n_layers"),
        ({"residual": "yes"}, "residual"),
        ({"pose_forecast": False, "forecast_with_current": True}, "forecast_with_current"),
        ({"all_frames": True}, "all_frames"),
    ],
)
def test_invalid_values_name_the_field(data: dict, named: str) -> None:
    with pytest.raises(FormatError, match=named):
        ModelConfig.from_dict(data)
