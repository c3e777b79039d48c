"""Person tracks for video inference: track files, a weight-free detector and an IoU tracker.

The official demo uses YOLOv3 + SORT, whose weights are a download. OpenCV 5 no longer ships
the HOG people detector, so the built-in detector here separates people from a static
background (the per-pixel median of frames sampled across the video) and keeps the
person-sized connected blobs; an online IoU tracker links them. It needs no weights and
suits a fixed camera; any other detector's output comes in through a track file.

Boxes follow the demo: [cx, cy, w, h] with `w = h = max(w, h)`; the crop then scales them by
1.2 (`BBOX_SCALE`), and tracks shorter than `MIN_TRACK_LEN` frames are dropped.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from storage.errors import FormatError, MissingFileError

BBOX_SCALE = 1.2
MIN_TRACK_LEN = 25
"""The demo's MIN_NUM_FRAMES: shorter tracklets are removed."""


@dataclass
class Track:
    """One person: the frames where it was seen and its square box [cx, cy, w, h] in each."""

    track_id: int
    frame_ids: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.frame_ids)


def square_boxes(boxes_xywh: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Top-left [x, y, w, h] boxes -> square centred [cx, cy, s, s], s = max(w, h) * scale."""
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    side = np.maximum(boxes[:, 2], boxes[:, 3]) * scale
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    return np.column_stack([centre, side, side])


def drop_short(tracks: Sequence[Track], min_len: int) -> list[Track]:
    """Tracks with at least `min_len` frames, as the demo drops short tracklets."""
    return [track for track in tracks if len(track) >= min_len]


# ---- track files ----------------------------------------------------------------------------


def _number(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise FormatError(f"{where}: {value!r} is not a number") from error
    if not np.isfinite(number):
        raise FormatError(f"{where}: {value!r} is not a finite number")
    return number


def _integer(value: Any, where: str) -> int:
    number = _number(value, where)
    if number != int(number):
        raise FormatError(f"{where}: {value!r} is not an integer")
    return int(number)


def _text(path: Path) -> str:
    """The file's text without a leading byte-order mark (Excel's "CSV UTF-8" writes one);
    bytes that are not UTF-8 (another encoding, a video given by mistake) are a FormatError
    naming the file rather than a UnicodeDecodeError."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FormatError(
            f"{path}: not UTF-8 text ({error}); a track file is a MOT CSV or a JSON file"
        ) from error


def _mot_rows(path: Path) -> list[tuple[int, int, list[float], str]]:
    """MOT-style CSV `frame,id,x,y,w,h[,...]` with 1-based frames (the MOT convention)."""
    rows = []
    reader = csv.reader(io.StringIO(_text(path), newline=""))
    for line, row in enumerate(reader, start=1):
        if not row or row[0].lstrip().startswith("#"):
            continue
        where = f"{path} line {line}"
        if len(row) < 6:
            raise FormatError(f"{where}: expected frame,id,x,y,w,h, got {len(row)} fields")
        frame = _integer(row[0], f"{where} field 'frame'") - 1
        track_id = _integer(row[1], f"{where} field 'id'")
        box = [_number(v, f"{where} field {n!r}") for v, n in zip(row[2:6], "xywh", strict=True)]
        rows.append((frame, track_id, box, where))
    return rows


def _json_rows(path: Path) -> list[tuple[int, int, list[float], str]]:
    """JSON `[{"frame": 0, "people": [{"id": 1, "bbox": [x, y, w, h]}, ...]}, ...]`, 0-based."""
    text = _text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise FormatError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, list):
        raise FormatError(f"{path}: top level must be a list of per-frame entries")
    rows = []
    for index, entry in enumerate(data):
        where = f"{path} entry {index}"
        if not isinstance(entry, dict) or "frame" not in entry or "people" not in entry:
            raise FormatError(f"{where}: needs fields 'frame' and 'people'")
        frame = _integer(entry["frame"], f"{where} field 'frame'")
        if not isinstance(entry["people"], list):
            raise FormatError(f"{where} field 'people': expected a list, got {entry['people']!r}")
        for person in entry["people"]:
            if not isinstance(person, dict) or "id" not in person or "bbox" not in person:
                raise FormatError(f"{where} field 'people': each needs 'id' and 'bbox'")
            bbox = person["bbox"]
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise FormatError(f"{where} field 'bbox': expected [x, y, w, h], got {bbox!r}")
            box = [_number(v, f"{where} field 'bbox'") for v in bbox]
            rows.append((frame, _integer(person["id"], f"{where} field 'id'"), box, where))
    return rows


def read_tracks(path: Path, frame_count: int) -> list[Track]:
    """Tracks from a MOT-style CSV (`.csv`/`.txt`, 1-based frames) or a JSON file (0-based).

    Every box must lie on a frame of the video and have a positive size; one person may
    appear once per frame. Errors name the file, the line or entry, and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"track file {path} not found")
    # Messages give frames as the file numbers them: a MOT frame 0 is a 0-based file's mistake.
    if path.suffix.lower() == ".json":
        rows, first, kind = _json_rows(path), 0, "JSON"
    else:
        rows, first, kind = _mot_rows(path), 1, "MOT CSV"
    if not rows:
        raise FormatError(f"{path}: no boxes in the track file")
    per_track: dict[int, dict[int, list[float]]] = {}
    for frame, track_id, box, where in rows:
        if not 0 <= frame < frame_count:
            raise FormatError(
                f"{where} field 'frame': frame {frame + first} does not exist; the video has "
                f"{frame_count} frames, numbered {first} to {frame_count - 1 + first} in a "
                f"{kind} track file"
            )
        if box[2] <= 0 or box[3] <= 0:
            raise FormatError(f"{where} field 'w'/'h': box size must be positive, got {box}")
        frames = per_track.setdefault(track_id, {})
        if frame in frames:
            raise FormatError(f"{where}: track {track_id} has two boxes on frame {frame + first}")
        frames[frame] = box
    tracks = []
    for track_id in sorted(per_track):
        frames = sorted(per_track[track_id])
        xywh = np.array([per_track[track_id][f] for f in frames])
        tracks.append(Track(track_id, np.array(frames, dtype=np.int64), square_boxes(xywh)))
    return tracks


# ---- built-in detector and tracker ----------------------------------------------------------


@dataclass
class ForegroundDetector:
    """People as blobs that differ from the median background of sampled frames.

    Works on a copy scaled to `work_width` pixels wide; a blob counts as a person when it is
    at least `min_height` of the frame height tall and not much wider than tall.
    """

    work_width: int = 320
    threshold: int = 25
    min_height: float = 0.15
    max_aspect: float = 1.6
    """Largest width / height of a person blob (arms stretched out)."""
    _background: np.ndarray | None = field(default=None, repr=False)

    def _small(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        factor = min(1.0, self.work_width / frame.shape[1])
        if factor == 1.0:
            return frame, 1.0
        size = (round(frame.shape[1] * factor), round(frame.shape[0] * factor))
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), factor

    def fit(self, samples: Sequence[np.ndarray]) -> ForegroundDetector:
        """Estimate the background from frames spread over the video (people move, it stays)."""
        if not samples:
            raise ValueError("the background needs at least one sample frame")
        small = np.stack([self._small(frame)[0] for frame in samples])
        self._background = np.median(small, axis=0).astype(np.uint8)
        return self

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """Boxes [x0, y0, x1, y1] (full-resolution pixels) of person-like foreground blobs."""
        if self._background is None:
            raise RuntimeError("ForegroundDetector.fit must run before detect")
        small, factor = self._small(frame)
        diff = cv2.absdiff(small, self._background).max(axis=2)
        diff = cv2.GaussianBlur(diff, (5, 5), 0)
        mask = (diff > self.threshold).astype(np.uint8)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel, iterations=2)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        boxes = []
        for x, y, w, h, _area in stats[1:count]:
            if h >= self.min_height * small.shape[0] and w <= self.max_aspect * h:
                boxes.append([x, y, x + w, y + h])
        return np.array(boxes, dtype=np.float64).reshape(-1, 4) / factor


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of [x0, y0, x1, y1] boxes: (n, 4) x (m, 4) -> (n, m)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass
class _Live:
    track_id: int
    box: np.ndarray
    last_frame: int


class IouTracker:
    """Online tracker: each detection joins the live track it overlaps most (greedy by IoU).

    A track survives up to `max_gap` frames without a detection; unmatched detections start
    new tracks. Ids count from 1 in order of appearance.
    """

    def __init__(self, min_iou: float = 0.3, max_gap: int = 5) -> None:
        self.min_iou = min_iou
        self.max_gap = max_gap
        self._live: list[_Live] = []
        self._next_id = 1

    def live_ids(self) -> set[int]:
        """Ids of the tracks a later frame may still extend (the others have ended for good)."""
        return {live.track_id for live in self._live}

    def update(self, frame: int, boxes_xyxy: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(track id, square [cx, cy, s, s] box) of every person detected on `frame`."""
        self._live = [t for t in self._live if frame - t.last_frame <= self.max_gap + 1]
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        assigned: dict[int, _Live] = {}
        if self._live and len(boxes):
            overlap = iou(np.stack([t.box for t in self._live]), boxes)
            for flat in np.argsort(-overlap, axis=None):
                t, d = np.unravel_index(flat, overlap.shape)
                if overlap[t, d] < self.min_iou:
                    break
                live = self._live[t]
                if d in assigned or any(a is live for a in assigned.values()):
                    continue
                assigned[int(d)] = live
        out = []
        for index, box in enumerate(boxes):
            live = assigned.get(index)
            if live is None:
                live = _Live(self._next_id, box, frame)
                self._next_id += 1
                self._live.append(live)
            live.box, live.last_frame = box, frame
            xywh = np.concatenate([box[:2], box[2:] - box[:2]])
            out.append((live.track_id, square_boxes(xywh)[0]))
        return sorted(out, key=lambda item: item[0])


def sample_indices(frame_count: int, samples: int = 32) -> list[int]:
    """Frame numbers spread evenly over the video, for the background estimate."""
    return sorted({int(i) for i in np.linspace(0, frame_count - 1, min(samples, frame_count))})
