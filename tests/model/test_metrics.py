"""Evaluation metrics against hand-built cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from model.metrics import (
    accel_error,
    accel_error_sequence,
    align_by_pelvis,
    compute_similarity_transform,
    frame_weighted_mean,
    mpjpe,
    pa_mpjpe,
)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


@pytest.fixture
def joints() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(4, 14, 3))


def test_procrustes_recovers_a_known_similarity_transform(joints: np.ndarray) -> None:
    rotation = _rotation(np.array([0.3, -1.0, 0.5]), 1.1)
    moved = 0.7 * joints @ rotation.T + np.array([0.2, -0.5, 3.0])
    aligned = compute_similarity_transform(joints, moved)
    np.testing.assert_allclose(aligned, moved, atol=1e-10)
    np.testing.assert_allclose(pa_mpjpe(joints, moved), 0.0, atol=1e-7)


def test_procrustes_never_fits_a_mirror_image(joints: np.ndarray) -> None:
    mirrored = joints * np.array([-1.0, 1.0, 1.0])
    aligned = compute_similarity_transform(joints, mirrored)
    assert pa_mpjpe(joints, mirrored).min() > 1.0
    for frame in range(len(joints)):  # aligned = s R x + t with det(R) = +1
        x = joints[frame] - joints[frame].mean(axis=0)
        y = aligned[frame] - aligned[frame].mean(axis=0)
        matrix, *_ = np.linalg.lstsq(x, y, rcond=None)
        assert np.linalg.det(matrix) > 0


def test_constant_offset_has_known_mpjpe_and_zero_accel(joints: np.ndarray) -> None:
    offset = np.array([0.003, 0.004, 0.0])  # 5 mm
    np.testing.assert_allclose(mpjpe(joints + offset, joints), 5.0)
    np.testing.assert_allclose(accel_error(joints + offset, joints), 0.0, atol=1e-9)


def test_pelvis_alignment_one_joint_or_mean_of_two() -> None:
    joints = np.arange(12.0).reshape(1, 4, 3)
    np.testing.assert_array_equal(align_by_pelvis(joints, 1)[0, 1], 0.0)
    aligned = align_by_pelvis(joints, (2, 3))
    np.testing.assert_allclose(aligned[0, 2], -aligned[0, 3])
    np.testing.assert_allclose(aligned[0, 0], joints[0, 0] - [7.5, 8.5, 9.5])


def test_hand_computed_acceleration() -> None:
    gt = np.zeros((4, 1, 3))
    pred = np.zeros((4, 1, 3))
    pred[1, 0, 0] = 0.001  # a 1 mm spike at frame 1
    # a_1 = x0 - 2 x1 + x2 = -2 mm; a_2 = x1 - 2 x2 + x3 = +1 mm.
    np.testing.assert_allclose(accel_error_sequence(pred, gt), [2.0, 1.0])
    np.testing.assert_allclose(accel_error(pred, gt), [0.0, 2.0, 1.0, 0.0])
    assert accel_error(pred[:2], gt[:2]).tolist() == [0.0, 0.0]


def test_frame_weighted_mean_weights_by_frames_not_sequences() -> None:
    assert frame_weighted_mean([np.array([1.0, 1.0, 1.0]), np.array([5.0])]) == 2.0
    assert np.isnan(frame_weighted_mean([]))
