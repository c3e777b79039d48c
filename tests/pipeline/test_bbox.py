"""The official box rules: keypoint extent and HMMR's smoothed box."""

import numpy as np
import pytest

from pipeline.bbox import extent_bbox, smooth_bbox


def test_extent_bbox_is_square_around_the_points_and_enlarged() -> None:
    points = np.array([[10.0, 20.0], [50.0, 40.0], [30.0, 100.0]])
    bbox = extent_bbox(points, enlarge=1.1)
    np.testing.assert_allclose(bbox, [30.0, 60.0, 88.0, 88.0], rtol=1e-6)


def test_smooth_bbox_of_a_static_person_is_its_extent_diagonal() -> None:
    frame = np.array([[0.0, 0.0, 1.0], [30.0, 40.0, 1.0], [15.0, 10.0, 0.0]])
    keypoints = np.repeat(frame[None], 20, axis=0)
    bbox, known = smooth_bbox(keypoints, vis_thresh=0.3, enlarge=0.9)
    assert bbox.shape == (20, 4) and bbox.dtype == np.float32
    # the diagonal of the visible extent is 50 px; the hidden joint is ignored
    np.testing.assert_allclose(bbox[10], [15.0, 20.0, 45.0, 45.0], rtol=1e-5)
    assert known.all()


def test_smooth_bbox_fills_leading_hidden_frames_without_shifting() -> None:
    keypoints = np.zeros((12, 2, 3))
    for t in range(12):
        keypoints[t] = [[100.0 + t, 0.0, 1.0], [100.0 + t, 60.0, 1.0]]
    keypoints[:3, :, 2] = 0.0
    bbox, known = smooth_bbox(keypoints, enlarge=1.0, sigma=0.01, kernel_size=1)
    assert not known[:3].any() and known[3:].all()
    # frame 5 keeps its own centre (no shift by the 3 missing frames)
    assert bbox[5, 0] == pytest.approx(105.0)
    assert bbox[0, 0] == pytest.approx(bbox[3, 0])


def test_smooth_bbox_without_visible_joints_raises() -> None:
    with pytest.raises(ValueError, match="no frame"):
        smooth_bbox(np.zeros((5, 3, 3)))
