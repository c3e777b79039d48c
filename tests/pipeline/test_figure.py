"""The moving synthetic figure: SMPL joints in the SPIN layout, projection, rendering, writers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from model.smpl import SMPL
from pipeline.sample.body import synthetic_smpl_arrays
from pipeline.sample.figure import (
    Camera,
    MotionClip,
    background,
    render_clip,
    write_jpegs,
    write_video,
)


@pytest.fixture(scope="module")
def arrays() -> dict:
    return synthetic_smpl_arrays(0)


@pytest.fixture(scope="module")
def body(arrays: dict) -> SMPL:
    return SMPL(arrays, arrays["joint_regressor_extra"], arrays["joint_regressor_h36m"])


def test_spin49_joints_come_from_the_documented_sources(arrays: dict, body: SMPL) -> None:
    clip = MotionClip.walking(3, seed=2)
    posed = clip.posed(body)
    assert posed.joints49.shape == (3, 49, 3) and posed.vertices.shape == (3, 6890, 3)
    np.testing.assert_allclose(posed.joints49[:, 25], posed.joints24[:, 8])  # rankle
    np.testing.assert_allclose(posed.joints49[:, 0], posed.vertices[:, 332])  # OP Nose
    np.testing.assert_allclose(posed.joints49[:, 24], posed.vertices[:, 6787])  # OP RHeel
    headtop = arrays["joint_regressor_extra"][3] @ posed.vertices[0]
    np.testing.assert_allclose(posed.joints49[0, 38], headtop, atol=1e-5)
    h36m_pelvis = posed.vertices.transpose(0, 2, 1) @ arrays["joint_regressor_h36m"][0]
    np.testing.assert_allclose(h36m_pelvis, posed.joints24[:, 0], atol=1e-5)  # pelvis ring


def test_figure_is_upright_in_front_of_the_camera(body: SMPL) -> None:
    posed = MotionClip.walking(4, seed=3, depth=4.0).posed(body)
    head, ankle = posed.joints49[:, 38], posed.joints49[:, 25]
    assert (head[:, 1] < ankle[:, 1] - 1.2).all()  # y down: head above the feet
    assert (np.abs(posed.joints24[:, 0, 2] - 4.0) < 0.5).all()


def test_camera_projection() -> None:
    camera = Camera(K=np.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]]), R=np.eye(3), t=[0, 0, 1])
    np.testing.assert_allclose(camera.project(np.array([[0.5, -0.5, 1.0]])), [[75.0, 15.0]])


def test_rendered_figure_moves_and_sits_at_its_joints(body: SMPL) -> None:
    camera = Camera.simple(160, 120, focal=150)
    frames, posed = render_clip(body, MotionClip.walking(12, seed=4), camera, (120, 160), seed=1)
    backdrop = background((120, 160), 1)
    assert frames[0].shape == (120, 160, 3) and frames[0].dtype == np.uint8
    pelvis = np.round(camera.project(posed.joints24[:, 0])).astype(int)
    for frame, (x, y) in zip(frames, pelvis, strict=True):
        assert np.abs(frame[y, x].astype(int) - backdrop[y, x]).sum() > 40
    corner = (slice(0, 10), slice(0, 10))
    np.testing.assert_array_equal(frames[0][corner], backdrop[corner])
    assert np.abs(frames[0].astype(int) - frames[6]).sum() > 1000


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_video_round_trip(tmp_path: Path, suffix: str) -> None:
    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(5)]
    path = tmp_path / f"video_0{suffix}"
    assert write_video(path, frames, fps=25) == 5
    capture = cv2.VideoCapture(str(path))
    read = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        read.append(frame)
    assert len(read) == 5 and read[0].shape == (48, 64, 3)
    assert abs(int(read[3].mean()) - 60) < 8
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_jpegs_are_decodable(tmp_path: Path) -> None:
    paths = write_jpegs(tmp_path, [np.zeros((8, 8, 3), np.uint8)] * 2, "image_{:05d}.jpg")
    assert [p.name for p in paths] == ["image_00000.jpg", "image_00001.jpg"]
    assert cv2.imread(str(paths[1])).shape == (8, 8, 3)
