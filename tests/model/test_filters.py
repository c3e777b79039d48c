"""Post-processing filters on pose rotations: shapes, smoothing, and fixed points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.filters import apply_filter, one_euro_array, slerp, slerp_average
from model.geometry import axis_angle_to_rotmat


def rotations(frames: int, noise: float, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, frames)[:, None, None]
    aa = np.sin(2 * np.pi * t) * np.ones((1, 24, 3)) * 0.5
    aa = aa + rng.normal(scale=noise, size=aa.shape)
    return axis_angle_to_rotmat(torch.from_numpy(aa))


def jitter(rotmat: torch.Tensor) -> float:
    r = rotmat.numpy()
    return float(np.abs(r[:-2] - 2 * r[1:-1] + r[2:]).mean())


@pytest.mark.parametrize("name", ["slerp", "one-euro"])
def test_filters_reduce_jitter_and_keep_rotations(name: str) -> None:
    noisy = rotations(60, noise=0.05)
    smooth = apply_filter(name, noisy)
    assert smooth.shape == noisy.shape
    assert jitter(smooth) < 0.8 * jitter(noisy)
    eye = torch.eye(3, dtype=smooth.dtype).expand_as(smooth)
    torch.testing.assert_close(smooth @ smooth.transpose(-1, -2), eye, atol=1e-6, rtol=0)


def test_constant_rotations_are_a_fixed_point() -> None:
    still = rotations(1, noise=0.0).expand(10, -1, -1, -1).clone()
    torch.testing.assert_close(slerp_average(still), still, atol=1e-6, rtol=0)
    torch.testing.assert_close(apply_filter("one-euro", still), still, atol=1e-6, rtol=0)
    assert apply_filter("none", still) is still


def test_slerp_average_is_the_official_running_slerp() -> None:
    # TCMR's `evaluate.py --filter` (MEVA's smoothing) walks each joint's quaternions in
    # order: q'[0] = q[0], q'[t] = slerp(q'[t-1], q[t], 0.3). About one axis slerp is linear
    # in the angle, so angles 0, 1, 0, 0 become 0, 0.3, 0.7*0.3 = 0.21, 0.7*0.21 = 0.147.
    angles = np.array([0.0, 1.0, 0.0, 0.0])
    aa = np.zeros((4, 1, 3))
    aa[:, 0, 2] = angles
    out = slerp_average(axis_angle_to_rotmat(torch.from_numpy(aa)), ratio=0.3).numpy()
    got = np.arctan2(out[:, 0, 1, 0], out[:, 0, 0, 0])
    np.testing.assert_allclose(got, [0.0, 0.3, 0.21, 0.147], atol=1e-9)
    q = slerp(np.array([1.0, 0, 0, 0]), np.array([0.0, 0, 0, 1]), 0.5)
    assert np.linalg.norm(q) == pytest.approx(1.0)


def test_one_euro_filter_has_the_official_smoothing_settings() -> None:
    # TCMR / VIBE `smooth_pose`: One-Euro with min_cutoff 0.004 and beta 0.7, time in frames
    # (t_e = 1), d_cutoff 1, on each component. A 1 rad turn about z between two frames,
    # quaternion (1, 0, 0, 0) -> (cos 0.5, 0, 0, sin 0.5), by hand: a_d = 2pi / (2pi + 1)
    # = 0.86270; z: dx_hat = 0.86270 * 0.47943, cutoff = 0.004 + 0.7 * dx_hat = 0.29352,
    # a = 2pi c / (2pi c + 1) = 0.64841, z' = 0.31087; w: cutoff 0.077927, a = 0.32869,
    # w' = 1 - 0.32869 * 0.12242 = 0.95976; angle 2 atan2(z', w') = 0.62647 rad.
    aa = np.zeros((2, 1, 3))
    aa[1, 0, 2] = 1.0
    out = apply_filter("one-euro", axis_angle_to_rotmat(torch.from_numpy(aa))).numpy()
    assert np.arctan2(out[1, 0, 1, 0], out[1, 0, 0, 0]) == pytest.approx(0.62647, abs=1e-5)


def test_one_euro_low_cutoff_follows_a_step_slowly() -> None:
    x = np.r_[np.zeros(5), np.ones(20)][:, None]
    out = one_euro_array(x, freq=30.0, min_cutoff=1.0, beta=0.0)
    assert out[5, 0] < 0.3 and out[-1, 0] > 0.9
    assert np.all(np.diff(out[:, 0]) >= 0)
