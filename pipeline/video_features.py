"""Frames of a user's video -> per-track backbone features, in one streaming decode.

The official demo first writes every frame to disk as JPEG and reads them back per track.
Here frames are decoded once, in order: each frame is tracked (or looked up in the track
file), every person on it is cropped straight away, and crops go to the backbone in large
batches. A track's crops wait in memory only until it is long enough to be kept, so short
tracklets never reach the backbone, and a short tracklet the tracker has ended is forgotten.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.crop import crop_image, decode_image_file
from pipeline.datasets.video import probe_video
from pipeline.frame_rate import NearestFrames, thinned_rate
from pipeline.runner import BackboneRunner
from pipeline.tracking import (
    BBOX_SCALE,
    ForegroundDetector,
    IouTracker,
    Track,
    drop_short,
    sample_indices,
)
from storage.errors import FormatError, MissingFileError
from storage.layout import FEATURE_DIM

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
FOLDER_FPS = 30000 / 1001
"""Frame rate assumed for an image folder: the rate the demo resamples videos to."""


def frame_order(path: Path) -> list[str | int]:
    """Sort key of an image file: digit runs compare as numbers, so frame_2 precedes frame_10
    (exports often number frames without zero padding)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


class FrameSource:
    """A video file or a folder of images, read as RGB frames in order.

    A video faster than `max_fps` yields only the frames nearest to a 1/max_fps grid (see
    `pipeline.frame_rate`), numbered as in the whole video; 0 yields every frame. An image
    folder has no timestamps and always yields every image.
    """

    def __init__(self, path: Path, max_fps: float = 0.0) -> None:
        self.path = Path(path)
        self.thinned_to: float | None = None
        """The rate frames are kept at when the video is thinned, else None."""
        self.images: list[Path] = []
        if self.path.is_dir():
            # Hidden files are no frames (macOS copies leave a '._name' beside each file).
            self.images = sorted(
                (
                    p
                    for p in self.path.iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                ),
                key=frame_order,
            )
            if not self.images:
                raise FormatError(
                    f"{self.path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})"
                )
            first = decode_image_file(self.images[0])
            self.frame_count = len(self.images)
            self.height, self.width = first.shape[:2]
            self.fps = FOLDER_FPS
        elif self.path.is_file():
            info = probe_video(self.path)
            self.frame_count, self.width, self.height = info.frames, info.width, info.height
            self.fps = info.fps if info.fps > 0 else FOLDER_FPS
            self.thinned_to = thinned_rate(info.fps, max_fps)
        else:
            raise MissingFileError(f"{self.path}: video file or image folder not found")

    @property
    def rate(self) -> float:
        """Frames per second of the frames `frames()` yields (the overlay's rate)."""
        return self.thinned_to or self.fps

    @property
    def name(self) -> str:
        """The demo's output name: the file name with '.' replaced by '_'."""
        return self.path.name.replace(".", "_")

    def _image(self, image: Path) -> np.ndarray:
        """One image of the folder, which must have the first image's size (one video)."""
        frame = decode_image_file(image)
        if frame.shape[:2] != (self.height, self.width):
            raise FormatError(
                f"{image}: image is {frame.shape[1]}x{frame.shape[0]}, the folder's "
                f"first image is {self.width}x{self.height} (field: image size)"
            )
        return frame

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """(index, RGB uint8 frame) for every kept frame; one that will not decode is an error.

        Every frame is decoded in order, but a dropped one is only grabbed (not converted).
        """
        if self.images:
            for index, image in enumerate(self.images):
                yield index, self._image(image)
            return
        chooser = None if self.thinned_to is None else NearestFrames(self.thinned_to, self.fps)
        capture = cv2.VideoCapture(str(self.path))
        try:
            for index in range(self.frame_count):
                ok = capture.grab()
                # OpenCV gives the grabbed frame's own timestamp (0 where it has none).
                seconds = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                if ok and chooser is not None and not chooser.keep(seconds):
                    continue
                frame = capture.retrieve()[1] if ok else None
                if frame is None:
                    raise FormatError(
                        f"{self.path}: frame {index} of {self.frame_count} does not decode "
                        "(field: video frames)"
                    )
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()

    def sample(self, indices: list[int]) -> list[np.ndarray]:
        """A few frames by number (seeking), for the detector's background estimate."""
        if self.images:
            return [self._image(self.images[i]) for i in indices]
        capture = cv2.VideoCapture(str(self.path))
        frames = []
        try:
            for index in indices:
                capture.set(cv2.CAP_PROP_POS_FRAMES, index)
                ok, frame = capture.read()
                if ok and frame is not None:
                    frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        finally:
            capture.release()
        if not frames:
            raise FormatError(f"{self.path}: no sampled frame decodes (field: video frames)")
        return frames


@dataclass
class TrackFeatures:
    """Backbone features of one kept track; `bboxes` are square and already x BBOX_SCALE."""

    track_id: int
    frame_ids: np.ndarray
    bboxes: np.ndarray
    features: np.ndarray


@dataclass
class VideoFeatures:
    """Everything the model step needs, plus how long each stage took (seconds)."""

    tracks: list[TrackFeatures]
    frame_count: int
    width: int
    height: int
    fps: float
    kept_frames: int
    """How many of the `frame_count` frames were tracked and run (see `FrameSource`)."""
    rate: float
    """Frames per second of the kept frames."""
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class _Pending:
    frame_ids: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    """Crops not yet sent to the backbone (all of them while the track is still short)."""
    features: list[np.ndarray] = field(default_factory=list)


class _Batcher:
    """Collects crops of kept tracks and hands the backbone runner `batch_size` at a time.

    The runner is the store builds' (channels_last, fp16 autocast and pinned memory on CUDA,
    one batch computing while the next is cropped); features reach their tracks in order.
    """

    def __init__(self, runner: BackboneRunner[list[_Pending]], batch_size: int) -> None:
        self.runner = runner
        self.batch_size = batch_size
        self.waiting: list[tuple[_Pending, np.ndarray]] = []
        self.seconds = 0.0

    def add(self, track: _Pending) -> None:
        self.waiting.extend((track, crop) for crop in track.crops)
        track.crops = []
        while len(self.waiting) >= self.batch_size:
            self._run(self.waiting[: self.batch_size])
            self.waiting = self.waiting[self.batch_size :]

    def flush(self) -> None:
        if self.waiting:
            self._run(self.waiting)
            self.waiting = []
        start = time.perf_counter()
        self._settle(self.runner.flush())
        self.seconds += time.perf_counter() - start

    def _run(self, items: list[tuple[_Pending, np.ndarray]]) -> None:
        start = time.perf_counter()
        crops = np.stack([crop for _, crop in items])
        self._settle(self.runner.submit(crops, [track for track, _ in items]))
        self.seconds += time.perf_counter() - start

    @staticmethod
    def _settle(result: tuple[np.ndarray, list[_Pending]] | None) -> None:
        if result is not None:
            features, tracks = result
            for track, feature in zip(tracks, features, strict=True):
                track.features.append(feature)


def _forget_ended(pending: dict[int, _Pending], ended: set[int], min_track_len: int) -> None:
    """Drop short tracks that have ended (the tracker lost them, or the track file has no
    later box): they can never be kept, and their crops would otherwise stay in memory to
    the end of the video (a long clip makes thousands)."""
    for track_id in ended:
        if len(pending[track_id].frame_ids) < min_track_len:
            del pending[track_id]


def extract_video_features(
    source: FrameSource,
    backbone: torch.nn.Module,
    tracks: list[Track] | None = None,
    min_track_len: int = 25,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    detector: ForegroundDetector | None = None,
    progress: bool = False,
) -> VideoFeatures:
    """Features (float32, [n, 2048]) of every track with at least `min_track_len` frames.

    `tracks` come from a track file; without them the built-in detector and IoU tracker
    find people. Only the frames `source` keeps are tracked, cropped and run; track-file
    boxes on other frames are ignored, and the tracker counts its gaps in kept frames.
    Stages timed: decode, detect/track, crop, features. `progress` shows a bar of video
    frames done: this loop is most of an inference run.
    """
    from tqdm import tqdm

    seconds = dict.fromkeys(("decode", "detect/track", "crop", "features"), 0.0)
    start = time.perf_counter()
    if tracks is None:
        detector = detector or ForegroundDetector()
        detector.fit(source.sample(sample_indices(source.frame_count)))
        tracker: IouTracker | None = IouTracker()
        lookup: dict[int, list[tuple[int, np.ndarray]]] = {}
    else:
        tracker = None
        lookup = {}
        last_frame: dict[int, int] = {}
        for track in drop_short(tracks, min_track_len):
            last_frame[track.track_id] = int(np.max(track.frame_ids))
            for frame, box in zip(track.frame_ids, track.boxes, strict=True):
                lookup.setdefault(int(frame), []).append((track.track_id, box))
    seconds["detect/track"] += time.perf_counter() - start
    batcher = _Batcher(BackboneRunner(backbone, torch.device(device), autocast=True), batch_size)
    pending: dict[int, _Pending] = {}
    frames = source.frames()
    kept_frames = 0
    # The bar closes before an error propagates, so the error is a line of its own.
    with tqdm(total=source.frame_count, desc="frames", unit="frame", disable=not progress) as bar:
        while True:
            tick = time.perf_counter()
            item = next(frames, None)
            seconds["decode"] += time.perf_counter() - tick
            if item is None:
                break
            index, image = item
            bar.update(index + 1 - bar.n)
            tick = time.perf_counter()
            if tracker is not None:
                assert detector is not None
                people = tracker.update(kept_frames, detector.detect(image))
                _forget_ended(pending, pending.keys() - tracker.live_ids(), min_track_len)
            else:
                people = lookup.get(index, [])
                ended = {t for t in pending if last_frame[t] < index}
                _forget_ended(pending, ended, min_track_len)
            kept_frames += 1
            seconds["detect/track"] += time.perf_counter() - tick
            for track_id, box in people:
                tick = time.perf_counter()
                scaled = np.array([box[0], box[1], box[2] * BBOX_SCALE, box[3] * BBOX_SCALE])
                track = pending.setdefault(track_id, _Pending())
                track.frame_ids.append(index)
                track.boxes.append(scaled)
                track.crops.append(crop_image(image, box, BBOX_SCALE))
                seconds["crop"] += time.perf_counter() - tick
                if len(track.frame_ids) >= min_track_len:
                    batcher.add(track)
        batcher.flush()
        bar.update(source.frame_count - bar.n)
    seconds["features"] = batcher.seconds
    kept = [
        TrackFeatures(
            track_id,
            np.array(track.frame_ids, dtype=np.int64),
            np.stack(track.boxes),
            np.stack(track.features).astype(np.float32).reshape(-1, FEATURE_DIM),
        )
        for track_id, track in sorted(pending.items())
        if len(track.frame_ids) >= min_track_len
    ]
    return VideoFeatures(
        kept,
        source.frame_count,
        source.width,
        source.height,
        source.fps,
        kept_frames,
        source.rate,
        seconds,
    )
