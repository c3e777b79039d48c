"""TCMRLoss: zero at the targets, masks exclude rows, hand-computed values, weights scale terms."""

from __future__ import annotations

import math

import pytest
import torch

from model.losses import TCMRLoss


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    kp_2d = torch.rand(2, 3, 49, 3, generator=g)
    kp_2d[..., 2] = 1.0
    return {
        "kp_2d": kp_2d,
        "kp_3d": torch.randn(2, 3, 49, 3, generator=g),
        "theta": 0.3 * torch.randn(2, 3, 85, generator=g),
        "w_3d": torch.tensor([[True] * 3, [False] * 3]),
        "w_smpl": torch.tensor([[True] * 3, [False] * 3]),
    }


def _perfect(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        "kp_2d": batch["kp_2d"][..., :2].clone(),
        "kp_3d": batch["kp_3d"].clone(),
        "theta": batch["theta"].clone(),
    }


def test_zero_when_predictions_equal_targets(batch) -> None:
    terms = TCMRLoss()(_perfect(batch), batch)
    assert set(terms) == {"kp_2d", "kp_3d", "pose", "shape", "total"}
    for name, value in terms.items():
        assert float(value) == pytest.approx(0.0, abs=1e-10), name


def test_masked_rows_do_not_count(batch) -> None:
    pred = _perfect(batch)
    pred["kp_3d"][1] += 100 * torch.randn(3, 49, 3)  # w_3d = 0 rows
    pred["theta"][1] += 5.0  # w_smpl = 0 rows
    terms = TCMRLoss()(pred, batch)
    assert float(terms["total"]) == pytest.approx(0.0, abs=1e-10)
    pred["kp_3d"][0, 2, 30] += 1.0  # a counted row
    assert float(TCMRLoss()(pred, batch)["kp_3d"]) > 0


def test_hand_computed_terms(batch) -> None:
    pred = _perfect(batch)
    pred["kp_2d"][..., 0] += 0.1  # every x off by 0.1, confidence 1
    batch["kp_2d"][0, 0, :, 2] = 0.0  # one row's joints carry no confidence
    pred["kp_3d"] += torch.tensor([1.0, -2.0, 0.5])  # a rigid shift vanishes after pelvis alignment
    pred["kp_3d"][0, :, 25] += torch.tensor([0.0, 0.0, 0.7])  # rankle off by 0.7 in all rows
    angle = 0.4
    pred["theta"][0, :, 3:75] = 0.0
    pred["theta"][0, :, 5] = angle  # global orientation: rotation about z
    batch["theta"][0, :, 3:75] = 0.0
    pred["theta"][0, :, 75:] += 0.2
    terms = TCMRLoss()(pred, batch)
    assert float(terms["kp_2d"]) == pytest.approx(300 * 0.01 / 2 * 5 / 6, rel=1e-5)
    assert float(terms["kp_3d"]) == pytest.approx(300 * 0.49 / (14 * 3), rel=1e-5)
    assert float(terms["pose"]) == pytest.approx(
        60 * 4 * (1 - math.cos(angle)) / (24 * 9), rel=1e-4
    )
    assert float(terms["shape"]) == pytest.approx(0.06 * 0.04, rel=1e-4)
    total = sum(float(terms[name]) for name in ("kp_2d", "kp_3d", "pose", "shape"))
    assert float(terms["total"]) == pytest.approx(total)


def test_weights_scale_their_terms(batch) -> None:
    pred = {key: value + 0.1 for key, value in _perfect(batch).items()}
    pred["kp_3d"][..., 25, 0] += 0.3
    base = TCMRLoss()(pred, batch)
    scaled = TCMRLoss(kp_2d=600, kp_3d=30, pose=0, shape=0.6)(pred, batch)
    assert float(scaled["kp_2d"]) == pytest.approx(2 * float(base["kp_2d"]))
    assert float(scaled["kp_3d"]) == pytest.approx(0.1 * float(base["kp_3d"]))
    assert float(scaled["pose"]) == 0.0
    assert float(scaled["shape"]) == pytest.approx(10 * float(base["shape"]))


def test_no_smpl_rows_gives_zero_pose_and_shape_and_gradients_flow(batch) -> None:
    batch["w_smpl"][:] = False
    batch["w_3d"][:] = False
    pred = {key: (value + 0.1).requires_grad_() for key, value in _perfect(batch).items()}
    terms = TCMRLoss()(pred, batch)
    assert float(terms["pose"]) == float(terms["shape"]) == float(terms["kp_3d"]) == 0.0
    terms["total"].backward()
    assert pred["kp_2d"].grad is not None and pred["kp_2d"].grad.abs().sum() > 0
