"""TCMR assembly: parameter count, state_dict keys, output shapes per ablation, build recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import ModelConfig, target_frames
from model.tcmr import TCMR, build_model
from storage.settings import Settings

ZERO_MEAN = {"pose": np.zeros(144), "shape": np.zeros(10), "cam": np.zeros(3)}


def test_default_parameter_count_and_official_keys() -> None:
    with torch.device("meta"):
        model = TCMR(ModelConfig(), ZERO_MEAN)
    assert sum(p.numel() for p in model.parameters()) == 81_907_360
    keys = list(model.state_dict())
    assert len(keys) == 59
    assert sum(key.startswith("encoder.") for key in keys) == 46
    assert {
        "regressor.init_pose",
        "regressor.fc1.weight",
        "encoder.attention.attention.4.bias",
    } <= set(keys)


def test_smpl_is_never_part_of_the_state(smpl) -> None:
    with torch.device("meta"):
        model = TCMR(ModelConfig(), ZERO_MEAN)
    before = sum(p.numel() for p in model.parameters())
    model.set_smpl(smpl)
    assert len(model.state_dict()) == 59
    assert sum(p.numel() for p in model.parameters()) == before


SMALL = {"feature_dim": 2048, "hidden_size": 8, "attention_size": 4}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"forecast_target": "adjacent"},
        {"forecast_target": "none"},
        {"pose_forecast": False},
        {"pose_forecast": False, "all_frames": True, "residual": True},
    ],
)
@torch.no_grad()
def test_output_shapes(overrides: dict, base_data: Path, smpl) -> None:
    config = ModelConfig(**{**SMALL, **overrides})
    model = TCMR(config, base_data / "smpl_mean_params.npz").set_smpl(smpl).eval()
    x = torch.randn(2, 16, 2048)
    k = len(target_frames(config))
    train, scores = model(x, is_train=True)
    assert scores is None
    assert train["theta"].shape == (2, k, 85)
    assert train["verts"].shape == (2, k, 6890, 3)
    assert train["kp_2d"].shape == (2, k, 49, 2)
    assert train["kp_3d"].shape == (2, k, 49, 3)
    assert train["rotmat"].shape == (2, k, 24, 3, 3)
    out, scores = model(x)
    assert out["theta"].shape == (2, 85)
    assert out["verts"].shape == (2, 6890, 3)
    assert out["kp_3d"].shape == (2, 49, 3)
    assert scores.shape == (2, 3 if config.pose_forecast else 1)
    # The integrated output (last in training order) is the evaluation output.
    torch.testing.assert_close(train["theta"][:, -1 if not config.all_frames else 8], out["theta"])


@torch.no_grad()
def test_build_model_starts_from_the_spin_regressor(base_data: Path) -> None:
    model = build_model(ModelConfig(), Settings(base_data=base_data))
    spin = torch.load(base_data / "spin_model_checkpoint.pth.tar", weights_only=True)["model"]
    torch.testing.assert_close(model.regressor.fc1.weight, spin["fc1.weight"])
    torch.testing.assert_close(model.regressor.init_pose, spin["init_pose"].reshape(1, 144))
    out, scores = model.eval()(torch.randn(1, 16, 2048))
    assert out["verts"].shape == (1, 6890, 3)
    assert torch.isfinite(out["theta"]).all() and scores.shape == (1, 3)


@torch.no_grad()
def test_eval_j14_regresses_the_14_evaluation_joints(base_data: Path, smpl) -> None:
    model = TCMR(ModelConfig(**SMALL), base_data / "smpl_mean_params.npz").set_smpl(smpl).eval()
    x = torch.randn(2, 16, 2048)
    out, _ = model(x, j14=True)
    assert out["kp_3d"].shape == (2, 14, 3)
    assert out["kp_2d"].shape == (2, 14, 2)
    torch.testing.assert_close(out["kp_3d"], smpl.joints14(out["verts"]))


def test_forward_without_smpl_says_how_to_attach_one(base_data: Path) -> None:
    model = TCMR(ModelConfig(**SMALL), base_data / "smpl_mean_params.npz").eval()
    with pytest.raises(RuntimeError, match="set_smpl"):
        model(torch.randn(1, 16, 2048))


def test_to_moves_the_attached_smpl_without_adopting_it(base_data: Path) -> None:
    from model.smpl import SMPL

    own = SMPL(base_data / "SMPL_NEUTRAL.pkl", base_data / "J_regressor_extra.npy")
    model = TCMR(ModelConfig(**SMALL), base_data / "smpl_mean_params.npz").set_smpl(own)
    model.to(torch.float64)
    assert model.regressor.fc1.weight.dtype == torch.float64
    assert own.v_template.dtype == torch.float64
    assert len(model.state_dict()) == len(TCMR(ModelConfig(**SMALL), ZERO_MEAN).state_dict())
