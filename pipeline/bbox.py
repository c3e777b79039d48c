"""The official square person boxes [cx, cy, w, h] computed from 2D keypoints.

Two rules exist in the VIBE/TCMR preprocessing (datasets.md §2.2): the keypoint extent
(MPI-INF-3DHP, Penn Action) and the temporally smoothed box from HMMR (3DPW, Human3.6M).
Both live here so every reader applies the same arithmetic.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import medfilt

# HMMR's reference person height: the box side is `150 / scale`.
_REFERENCE_HEIGHT = 150.0
_MIN_PERSON_HEIGHT = 0.5


def extent_bbox(points: np.ndarray, enlarge: float = 1.1) -> np.ndarray:
    """Square box around the extent of the given (J, 2) points, side = max(w, h) * enlarge.

    The caller passes only the joints that exist (VIBE drops all-zero rows first).
    """
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError("extent_bbox needs at least one (x, y) point")
    low = points[:, :2].min(axis=0)
    high = points[:, :2].max(axis=0)
    centre = (low + high) / 2.0
    side = float(max(high - low)) * enlarge
    return np.array([centre[0], centre[1], side, side], dtype=np.float32)


def smooth_bbox(
    keypoints: np.ndarray,
    vis_thresh: float = 0.3,
    enlarge: float = 1.1,
    kernel_size: int = 11,
    sigma: float = 8.0,
) -> tuple[np.ndarray, np.ndarray]:
    """HMMR's smoothed box for every frame of a track of (T, J, 3) keypoints (x, y, conf).

    Per frame: centre of the visible joints' extent and `scale = 150 / diagonal`; frames
    without a usable box are linearly interpolated between known frames; then a median
    filter (zero-padded, as scipy's `medfilt`) and a Gaussian filter smooth (cx, cy, scale);
    side = 150 / scale * enlarge. Unlike the official code, which prepends zero rows for the
    leading frames without a box (shifting the boxes against the frames when they are later
    sliced), frames before the first or after the last usable one take the nearest smoothed
    box and are reported as False in the returned mask.

    Returns (bbox [T, 4] float32, known [T] bool).
    """
    count = keypoints.shape[0]
    params = np.zeros((count, 3), dtype=np.float64)
    known = np.zeros(count, dtype=bool)
    for index, frame in enumerate(keypoints):
        visible = frame[:, 2] > vis_thresh
        if not visible.any():
            continue
        low = frame[visible, :2].min(axis=0)
        high = frame[visible, :2].max(axis=0)
        height = float(np.linalg.norm(high - low))
        if height < _MIN_PERSON_HEIGHT:
            continue
        params[index, :2] = (low + high) / 2.0
        params[index, 2] = _REFERENCE_HEIGHT / height
        known[index] = True
    if not known.any():
        raise ValueError("no frame of the track has a visible joint to build a box from")
    rows = np.flatnonzero(known)
    first, last = rows[0], rows[-1]
    span = np.arange(first, last + 1)
    track = np.stack([np.interp(span, rows, params[rows, k]) for k in range(3)], axis=1)
    # A kernel longer than the track would make medfilt's zero padding win the median.
    kernel = max(1, min(kernel_size, len(span) if len(span) % 2 else len(span) - 1))
    track = np.stack([medfilt(track[:, k], kernel) for k in range(3)], axis=1)
    track = np.stack([gaussian_filter1d(track[:, k], sigma) for k in range(3)], axis=1)
    full = np.empty((count, 3), dtype=np.float64)
    full[first : last + 1] = track
    full[:first] = track[0]
    full[last + 1 :] = track[-1]
    side = _REFERENCE_HEIGHT / full[:, 2] * enlarge
    bbox = np.stack([full[:, 0], full[:, 1], side, side], axis=1).astype(np.float32)
    inside = np.zeros(count, dtype=bool)
    inside[first : last + 1] = True
    return bbox, inside
