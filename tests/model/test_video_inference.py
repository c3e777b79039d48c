"""Video inference on features: windows per frame, batching across tracks, cameras, smoothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import ModelConfig
from model.infer import (
    OUTPUT_KEYS,
    TrackInput,
    crop_to_orig_cam,
    frame_windows,
    predict_tracks,
    project_to_image,
)
from model.smpl import SMPL
from model.tcmr import TCMR


@pytest.fixture(scope="module")
def small_model(base_data: Path, smpl: SMPL) -> TCMR:
    """A real TCMR with a small temporal encoder (fast on CPU); mean params from base data."""
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=32, attention_size=16)
    return TCMR(config, base_data / "smpl_mean_params.npz").set_smpl(smpl).eval()


def _track(track_id: int, length: int, seed: int) -> TrackInput:
    rng = np.random.default_rng(seed)
    bboxes = np.column_stack(
        [rng.uniform(100, 200, length), rng.uniform(80, 120, length), np.full((length, 2), 96.0)]
    )
    features = rng.normal(size=(length, 2048)).astype(np.float32)
    return TrackInput(track_id, np.arange(5, 5 + length), bboxes, features)


def test_one_window_per_frame_with_edge_padding() -> None:
    windows = frame_windows(20)
    assert windows.shape == (20, 16)
    np.testing.assert_array_equal(windows[:, 8], np.arange(20))
    np.testing.assert_array_equal(windows[0], np.zeros(16))  # head: one frame repeated
    np.testing.assert_array_equal(windows[8], np.arange(16))
    np.testing.assert_array_equal(windows[12], np.arange(4, 20))
    np.testing.assert_array_equal(windows[13], np.full(16, 13))  # tail: last 7 frames single
    with pytest.raises(ValueError, match="at least 16 frames"):
        frame_windows(15)


def test_orig_cam_follows_the_demo_formula() -> None:
    pred_cam = np.array([[0.9, 0.1, -0.2], [1.1, -0.05, 0.3]])
    bboxes = np.array([[300.0, 200.0, 150.0, 150.0], [100.0, 50.0, 80.0, 80.0]])
    width, height = 640, 360
    cam = crop_to_orig_cam(pred_cam, bboxes, width, height)
    # sx = s h / W, sy = s h / H, tx = (cx - W/2) / (W/2) / sx + tx_c (tcmr.md section 11).
    sx = 0.9 * 150 / 640
    np.testing.assert_allclose(cam[0, :2], [sx, 0.9 * 150 / 360])
    assert cam[0, 2] == pytest.approx((300 - 320) / 320 / sx + 0.1)
    assert cam[1, 3] == pytest.approx((50 - 180) / 180 / (1.1 * 80 / 360) + 0.3)
    # A point at the body origin lands where the crop camera puts it inside the box.
    point = np.zeros((2, 1, 3))
    pixels = project_to_image(point, cam, width, height)[:, 0]
    expected = bboxes[:, :2] + bboxes[:, 2:3] / 2 * pred_cam[:, 0:1] * pred_cam[:, 1:3]
    np.testing.assert_allclose(pixels, expected, atol=1e-9)


def test_predictions_are_the_mid_frames_of_per_frame_windows(small_model: TCMR) -> None:
    tracks = [_track(7, 16, seed=1), _track(3, 18, seed=2)]
    out = predict_tracks(small_model, tracks, 320, 240, batch_size=5)
    assert list(out) == [7, 3]
    second = out[3]
    assert set(second) == set(OUTPUT_KEYS) and second["joints2d"] is None
    assert second["verts"].shape == (18, 6890, 3) and second["joints3d"].shape == (18, 49, 3)
    np.testing.assert_array_equal(second["frame_ids"], np.arange(5, 23))
    features = torch.from_numpy(tracks[1].features)
    # Frame 0 (head: frame 0 repeated), frame 9 (frames 1..16), frame 17 (tail: repeated).
    windows = torch.stack([features[[0] * 16], features[1:17], features[[17] * 16]])
    with torch.inference_mode():
        reference, _ = small_model(windows)
    theta = reference["theta"].numpy()
    for row, frame in enumerate((0, 9, 17)):
        np.testing.assert_allclose(second["pred_cam"][frame], theta[row, :3], atol=1e-5)
        np.testing.assert_allclose(second["pose"][frame], theta[row, 3:75], atol=1e-5)
        np.testing.assert_allclose(second["betas"][frame], theta[row, 75:], atol=1e-5)
    np.testing.assert_allclose(
        second["orig_cam"], crop_to_orig_cam(second["pred_cam"], tracks[1].bboxes, 320, 240)
    )


def test_smoothing_filters_pose_and_recomputes_the_mesh(small_model: TCMR, smpl: SMPL) -> None:
    track = _track(1, 16, seed=3)
    raw = predict_tracks(small_model, [track], 320, 240)[1]
    smooth = predict_tracks(small_model, [track], 320, 240, smooth=True)[1]
    np.testing.assert_allclose(smooth["pose"][0], raw["pose"][0], atol=1e-4)  # first sample kept
    np.testing.assert_array_equal(smooth["pred_cam"], raw["pred_cam"])
    jitter = np.abs(np.diff(raw["pose"][:, 3:], 2, axis=0)).mean()
    assert np.abs(np.diff(smooth["pose"][:, 3:], 2, axis=0)).mean() < 0.5 * jitter
    with torch.inference_mode():
        body = smpl.forward_axis_angle(
            torch.from_numpy(smooth["betas"]).float(), torch.from_numpy(smooth["pose"]).float()
        )
    np.testing.assert_allclose(smooth["verts"], body.vertices.numpy(), atol=1e-4)
