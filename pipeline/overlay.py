"""The overlay video: each person's mesh wireframe and joints drawn on the frames with OpenCV.

The demo renders with pyrender on EGL, which fails on headless machines; drawing the
projected mesh edges and joints with OpenCV needs nothing but the frames and the pixels.
Frames stream through one writer; the file appears under its final name only when complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from storage.errors import FormatError

_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
_PALETTE = [(66, 135, 245), (245, 90, 66), (80, 200, 120), (230, 190, 40), (180, 90, 220)]
"""RGB colours, one per person in turn."""


@dataclass
class PersonDrawing:
    """One person on one frame: mesh vertices and joints in image pixels."""

    track_id: int
    vertices: np.ndarray
    """[V, 2] pixels."""
    joints: np.ndarray
    """[J, 2] pixels."""
    depth: float = 0.0
    """Larger is drawn first (farther); the demo orders people by camera scale."""


def mesh_edges(faces: np.ndarray) -> np.ndarray:
    """Unique undirected edges [E, 2] of a triangle mesh."""
    pairs = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(pairs, axis=1), axis=0)


def colour_of(track_id: int) -> tuple[int, int, int]:
    return _PALETTE[track_id % len(_PALETTE)]


def draw_people(
    frame_rgb: np.ndarray, people: Iterable[PersonDrawing], edges: np.ndarray
) -> np.ndarray:
    """A copy of the frame with every person's wireframe (thin) and joints (dots)."""
    image = frame_rgb.copy()
    height, width = image.shape[:2]
    for person in sorted(people, key=lambda p: -p.depth):
        colour = colour_of(person.track_id)
        # Fixed point (4 fractional bits) keeps the sub-pixel mesh edges smooth.
        lines = np.round(person.vertices[edges] * 16).astype(np.int32)
        cv2.polylines(image, list(lines), False, colour, 1, cv2.LINE_AA, shift=4)
        for x, y in person.joints:
            if 0 <= x < width and 0 <= y < height:
                cv2.circle(image, (int(x), int(y)), 3, (255, 255, 255), -1, cv2.LINE_AA)
                cv2.circle(image, (int(x), int(y)), 2, colour, -1, cv2.LINE_AA)
    return image


def write_bgr_video(path: Path, frames_bgr: Iterable[np.ndarray], fps: float) -> int:
    """Write BGR frames as mp4v .mp4 or MJPG .avi; returns the count (0: nothing written).

    Frames go to a sibling temporary name that keeps the suffix (OpenCV picks the container
    by it) and replace `path` only once all are in, so a failure leaves no half video.
    """
    path = Path(path)
    if path.suffix not in _CODECS:
        raise FormatError(f"{path}: video suffix must be one of {', '.join(_CODECS)}")
    temp = path.with_name(f".{path.stem}.partial{path.suffix}")
    writer: cv2.VideoWriter | None = None
    count = 0
    try:
        for frame in frames_bgr:
            if writer is None:
                height, width = frame.shape[:2]
                fourcc = cv2.VideoWriter.fourcc(*_CODECS[path.suffix])
                writer = cv2.VideoWriter(str(temp), fourcc, fps, (width, height))
                if not writer.isOpened():
                    raise OSError(f"{path}: OpenCV cannot open a {_CODECS[path.suffix]} writer")
            writer.write(frame)
            count += 1
        if writer is not None:
            writer.release()
            writer = None
            os.replace(temp, path)
    finally:
        if writer is not None:
            writer.release()
        temp.unlink(missing_ok=True)
    return count


def write_overlay(
    path: Path,
    frames: Iterable[tuple[int, np.ndarray]],
    people_at: Callable[[int], list[PersonDrawing]],
    faces: np.ndarray,
    fps: float,
) -> int:
    """Write the overlay video (.mp4 mp4v or .avi MJPG) from RGB frames; returns the count.

    `people_at(frame)` is asked per frame, so projected meshes never pile up in memory.
    """
    edges = mesh_edges(np.asarray(faces))
    drawn = (
        cv2.cvtColor(draw_people(frame, people_at(index), edges), cv2.COLOR_RGB2BGR)
        for index, frame in frames
    )
    return write_bgr_video(path, drawn, fps)
