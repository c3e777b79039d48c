"""A sample video of several synthetic people walking side to side, with their true boxes.

Video inference needs a clip with separate, moving people (the built-in detector finds
them against a static background) and the boxes they really occupy, to write track files
and to check what the pipeline finds. Each person walks within its own slot of the frame,
so people never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.sample.figure import (
    Camera,
    MotionClip,
    background,
    render_body,
    synthetic_body,
    write_jpegs,
    write_video,
)


@dataclass
class PeopleVideo:
    """Where the sample went and each person's true box per frame, [x, y, w, h] pixels."""

    path: Path
    boxes: list[np.ndarray]
    frame_size: tuple[int, int]
    fps: float


def render_people(
    people: int, frames: int, frame_size: tuple[int, int] = (120, 240), seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """BGR frames and true [x, y, w, h] boxes (one [frames, 4] array per person)."""
    height, width = frame_size
    camera = Camera.simple(width, height)
    depth = max(10.0, 4.0 * people)
    metres_wide = width / camera.K[0, 0] * depth
    slot = metres_wide / people
    body = synthetic_body(seed)
    posed = []
    for index in range(people):
        # A steady walk across 60% of its own slot: the slots never overlap, and each pixel
        # is covered for less than half the clip (the detector's median background).
        centre = -metres_wide / 2 + slot * (index + 0.5)
        direction = 1.0 if index % 2 else -1.0
        clip = MotionClip.walking(frames, seed=seed + index, depth=depth, sway=0.0)
        clip.transl[:, 0] = centre + direction * slot * np.linspace(-0.3, 0.3, frames)
        posed.append(clip.posed(body))
    backdrop = background(frame_size, seed)
    images = []
    for t in range(frames):
        image = backdrop
        for person in posed:
            image = render_body(camera, person.vertices[t], body.faces, frame_size, image)
        images.append(image)
    boxes = []
    for person in posed:
        pixels = camera.project(person.vertices)
        low, high = pixels.min(axis=1), pixels.max(axis=1)
        boxes.append(np.concatenate([low, high - low], axis=1))
    return images, boxes


def write_people_video(
    path: Path,
    people: int,
    frames: int,
    frame_size: tuple[int, int] = (120, 240),
    seed: int = 0,
    fps: float = 30.0,
) -> PeopleVideo:
    """Write the clip as a video (.mp4/.avi) or, for a path without suffix, a JPEG folder."""
    images, boxes = render_people(people, frames, frame_size, seed)
    path = Path(path)
    if path.suffix:
        write_video(path, images, fps)
    else:
        write_jpegs(path, images)
    return PeopleVideo(path, boxes, frame_size, fps)


def mot_lines(boxes: list[np.ndarray], first_id: int = 1) -> list[str]:
    """MOTChallenge rows `frame,id,x,y,w,h,conf,-1,-1,-1` (1-based frames) for every person."""
    return [
        f"{t + 1},{first_id + person},{x:.2f},{y:.2f},{w:.2f},{h:.2f},1,-1,-1,-1"
        for person, per_frame in enumerate(boxes)
        for t, (x, y, w, h) in enumerate(per_frame)
    ]
