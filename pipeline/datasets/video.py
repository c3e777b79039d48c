"""What a reader needs to know about a video before referencing its frames: size and length.

Readers reference video frames as `ImageRef(path, frame=k)` and decode them later; they
must not promise frames a video does not have, nor miss any it has. The container's frame
count can lie either way (a truncated file, a header that undercounts), so the claimed last
frame is decoded and the one after it must not be; only when that fails are the frames
counted one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2

from storage.errors import FormatError


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    width: int
    height: int
    fps: float


def probe_video(path: Path) -> VideoInfo:
    """Frame count (verified by decoding), size and fps of a video; FormatError if unreadable."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise FormatError(f"{path}: video cannot be opened (field: video frames)")
        claimed = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        frames = claimed
        if claimed > 0:
            capture.set(cv2.CAP_PROP_POS_FRAMES, claimed - 1)
            # The claimed last frame must decode and be the last: a header that undercounts
            # (an AVI dwLength, a duration-based estimate) would otherwise drop the tail.
            ok = capture.read()[0] and not capture.read()[0]
        if claimed <= 0 or not ok:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            frames = 0
            while capture.read()[0]:
                frames += 1
        if frames == 0 or width <= 0 or height <= 0:
            raise FormatError(f"{path}: video has no decodable frame (field: video frames)")
        return VideoInfo(frames=frames, width=width, height=height, fps=fps)
    finally:
        capture.release()
