"""The SPIN IEF regressor head: initialisation from SPIN and its outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.geometry import rot6d_to_rotmat, rotmat_to_axis_angle, weak_perspective_projection
from model.regressor import Regressor, load_spin_regressor
from model.smpl import SMPL
from storage.errors import FormatError


@pytest.fixture()
def regressor(base_data: Path) -> Regressor:
    model = Regressor(base_data / "smpl_mean_params.npz")
    ignored = load_spin_regressor(model, base_data / "spin_model_checkpoint.pth.tar")
    assert len(ignored) == 318 and "layer4.2.bn3.weight" in ignored
    return model.eval()


def test_spin_init_fills_the_head(base_data: Path, regressor: Regressor) -> None:
    spin = torch.load(base_data / "spin_model_checkpoint.pth.tar", weights_only=True)["model"]
    torch.testing.assert_close(regressor.fc1.weight, spin["fc1.weight"])
    torch.testing.assert_close(regressor.init_pose, spin["init_pose"])
    layers = ("fc1", "fc2", "decpose", "decshape", "deccam")
    expected = {f"{name}.{p}" for name in layers for p in ("weight", "bias")}
    assert set(regressor.state_dict()) == expected | {"init_cam", "init_pose", "init_shape"}


def test_zero_decoders_return_the_mean_params(
    base_data: Path, regressor: Regressor, smpl: SMPL
) -> None:
    with torch.no_grad():
        for decoder in (regressor.decpose, regressor.decshape, regressor.deccam):
            decoder.weight.zero_()
            decoder.bias.zero_()
        out = regressor(torch.randn(2, 2048), smpl)
    with np.load(base_data / "smpl_mean_params.npz") as npz:
        pose, shape, cam = (
            torch.tensor(npz[k], dtype=torch.float32) for k in ("pose", "shape", "cam")
        )
    rotmat = rot6d_to_rotmat(pose[None])
    torch.testing.assert_close(out["rotmat"], rotmat.expand(2, -1, -1, -1))
    expected = torch.cat([cam, rotmat_to_axis_angle(rotmat).reshape(72), shape])
    torch.testing.assert_close(out["theta"], expected.expand(2, -1))
    # The mean root is turned by pi about x (the SPIN camera convention).
    torch.testing.assert_close(
        out["theta"][0, 3:6].abs(), torch.tensor([np.pi, 0.0, 0.0]), atol=1e-4, rtol=0
    )


def test_output_shapes(regressor: Regressor, smpl: SMPL) -> None:
    features = torch.randn(2, 2048, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = regressor(features, smpl)
        eval14 = regressor(features, smpl, j14=True)
    assert out["theta"].shape == (2, 85) and out["verts"].shape == (2, 6890, 3)
    assert out["kp_3d"].shape == (2, 49, 3) and out["kp_2d"].shape == (2, 49, 2)
    assert out["rotmat"].shape == (2, 24, 3, 3)
    assert eval14["kp_3d"].shape == (2, 14, 3) and eval14["kp_2d"].shape == (2, 14, 2)
    torch.testing.assert_close(eval14["kp_3d"], smpl.joints14(out["verts"]))
    torch.testing.assert_close(
        out["kp_2d"], weak_perspective_projection(out["kp_3d"], out["theta"][:, :3])
    )
    assert out["kp_2d"].abs().max() < 1.5  # the body projects into the crop


def test_incomplete_head_is_refused(base_data: Path, tmp_path: Path) -> None:
    spin = torch.load(base_data / "spin_model_checkpoint.pth.tar", weights_only=True)
    del spin["model"]["decpose.bias"]
    spin["model"]["fc2.weight"] = torch.zeros(10, 10)
    path = tmp_path / "spin_broken.pth.tar"
    torch.save(spin, path)
    with pytest.raises(
        FormatError, match=r"spin_broken.*missing keys: decpose\.bias.*fc2\.weight \(10, 10\)"
    ):
        load_spin_regressor(Regressor(base_data / "smpl_mean_params.npz"), path)


def test_mean_params_are_validated(tmp_path: Path) -> None:
    np.savez(tmp_path / "mean.npz", pose=np.zeros(144), shape=np.zeros(9), cam=np.zeros(3))
    with pytest.raises(FormatError, match=r"mean\.npz: field 'shape' has 9 values"):
        Regressor(tmp_path / "mean.npz")
