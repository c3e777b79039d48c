"""A small Penn Action in its release layout (datasets.md §8): `labels/%04d.mat` + `frames/%04d/`.

Labels are MATLAB v5 files with the nine keys (`action`, `pose`, `x`, `y`, `visibility`,
`train`, `bbox`, `dimensions`, `nframes`); frames are `%06d.jpg` (1-based) showing the
rendered figure. The 13 joints are planted in VIBE's labelling (index 1 = the person's left
shoulder); the truth records which SPIN slot each one is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from model.smpl import SMPL
from pipeline.sample.figure import Camera, MotionClip, render_clip, synthetic_body, write_jpegs
from storage.files import write_atomic

FRAME_SIZE = (240, 320)  # (H, W); the release is mostly 480x360 and larger
# Penn index -> SPIN-49 row, VIBE labelling: head top, l/r shoulder, elbow, wrist, hip, knee, ankle.
PENN_TO_SPIN: tuple[int, ...] = (38, 34, 33, 35, 32, 36, 31, 28, 27, 29, 26, 30, 25)
# (stem, frames, train flag, action, view)
VIDEOS = (("0001", 20, 1, "baseball_pitch", "front"), ("0002", 18, -1, "jumping_jacks", "side"))
HIDDEN = ((3, 5), (4, 5), (7, 12))  # (frame, joint) planted with visibility 0
ZERO_POINT = (9, 0)  # (frame, joint) planted at (0, 0) with visibility 1


def write_penn_action(root: Path, seed: int = 0, body: SMPL | None = None) -> dict[str, Any]:
    """Write `root/pennaction`; returns {stem: {"x", "y", "visibility", "train"}} as planted."""
    body = body or synthetic_body(seed)
    base = Path(root) / "pennaction"
    height, width = FRAME_SIZE
    camera = Camera.simple(width, height, focal=280.0)
    truth: dict[str, Any] = {}
    for number, (stem, frames, train, action, view) in enumerate(VIDEOS):
        clip = MotionClip.walking(frames, seed=seed * 100 + 40 + number, depth=4.0)
        images, posed = render_clip(body, clip, camera, FRAME_SIZE, seed=seed + number)
        write_jpegs(base / "frames" / stem, images, "{:06d}.jpg", start=1)
        points = camera.project(posed.joints49[:, list(PENN_TO_SPIN)])
        visibility = np.ones((frames, 13), dtype=np.uint8)
        for frame, joint in HIDDEN:
            visibility[frame, joint] = 0
        points[ZERO_POINT] = 0.0
        x, y = points[..., 0], points[..., 1]
        shown = np.where((x > 0)[..., None], points, np.nan)
        corners = np.concatenate([np.nanmin(shown, axis=1), np.nanmax(shown, axis=1)], axis=1)
        label = {
            "action": action,
            "pose": view,
            "x": x,
            "y": y,
            "visibility": visibility,
            "train": np.array([[train]], dtype=np.int16),
            "bbox": corners,
            "dimensions": np.array([[height, width, frames]], dtype=np.int32),
            "nframes": np.array([[frames]], dtype=np.int32),
        }
        path = base / "labels" / f"{stem}.mat"
        write_atomic(path, lambda temporary, label=label: scipy.io.savemat(temporary, label))
        truth[stem] = {"x": x, "y": y, "visibility": visibility, "train": train}
    return truth
