"""PoseTrack readers: 2018 COCO-style JSON per video and the 2017 `annolist` JSON.

2018 rules (VIBE `posetrack_utils`, datasets.md §9.3, tcmr.md §6), as parameters: labelled
frames only; keypoints reordered by the file's own `categories[0].keypoints` names into the
canonical 17, then into the 49-joint layout by name; per track, annotations with all-zero
keypoints or a zero-width/height box are dropped and tracks with fewer than 8 remaining
frames are skipped (recorded); confidence 1 except where (x, y) = (0, 0); bbox = annotation
box centre, side `max(w, h) * 0.8`; crop scale 1.3 (the default). Image paths come from the
annotation's own `image_id` (not VIBE's `frame_id` lookup). A track's frames are the
labelled frames, so `frame_index` can have gaps (as the official windows do); PoseTrack
states no frame rate, 30 fps is assumed.

2017 (not read by VIBE): per-video `annolist`, scalars wrapped in one-element lists, 15
joints by `annopoints.point.id`; `annorect` x1..y2 is a head box, so the person box is the
visible keypoints' extent (`bbox_enlarge_2017`, a documented choice — no official rule).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.bbox import extent_bbox
from pipeline.datasets.records import ImageRef, Quarantine, SequenceRecord, no_3d_labels
from pipeline.datasets.skips import reject, too_short
from pipeline.joints import to_spin49
from storage.errors import FormatError, MissingFileError
from storage.hashing import hash_files

DATASET = "posetrack"
FPS = 30.0
USABLE = "usable frames"
"""What a track's length counts (annotations left after filtering), in a short track's skip."""
CANONICAL_2018 = (
    "nose", "head_bottom", "head_top", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
JOINTS_2017 = 15


@dataclass(frozen=True)
class PoseTrackRules:
    min_frames: int = 8
    bbox_enlarge: float = 0.8
    crop_scale: float = 1.3
    bbox_enlarge_2017: float = 1.2


def _load_coco(path: Path) -> dict[str, Any]:
    """One video's COCO-style JSON, checked to hold the lists the reader walks.

    Read with `json` rather than pycocotools: only the raw lists are used, and
    `pycocotools.COCO` prints progress to stdout, which concurrent build tasks cannot silence
    safely.
    """
    try:
        with path.open("rb") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FormatError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise FormatError(f"{path}: not a COCO-style PoseTrack file (top level is not an object)")
    for field in ("images", "annotations", "categories"):
        entries = data.get(field, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise FormatError(
                f"{path}: not a COCO-style PoseTrack file (field {field} is not a list of objects)"
            )
    for image in data.get("images", []):
        if image.get("is_labeled") and not isinstance(image.get("id"), int):
            raise FormatError(f"{path}: a labelled image lacks an integer field images.id")
    return data


def _reorder(coco: dict[str, Any], path: Path) -> list[int]:
    """Index in the stored keypoints of each canonical joint, by the file's own names."""
    try:
        names = list(coco["categories"][0]["keypoints"])
    except (KeyError, IndexError, TypeError) as error:
        raise FormatError(f"{path}: field categories[0].keypoints missing") from error
    unknown = sorted(set(CANONICAL_2018) - set(names))
    if unknown or len(names) != len(CANONICAL_2018):
        raise FormatError(f"{path}: field categories[0].keypoints lacks {unknown or names}")
    return [names.index(name) for name in CANONICAL_2018]


def read_posetrack(
    root: Path,
    split: str = "train",
    quarantine: Quarantine | None = None,
    rules: PoseTrackRules | None = None,
) -> Iterator[SequenceRecord]:
    """Yield one record per kept track of every `posetrack_data/annotations/<split>/*.json`."""
    rules = rules or PoseTrackRules()
    yield from _each_video(
        Path(root) / "posetrack_data" / "annotations" / split,
        "PoseTrack",
        lambda path: _video_2018(Path(root), path, split, rules, quarantine),
        f"{DATASET}/{split}",
        "json",
        quarantine,
    )


def _video_2018(
    root: Path, path: Path, split: str, rules: PoseTrackRules, quarantine: Quarantine | None
) -> Iterator[SequenceRecord]:
    coco = _load_coco(path)
    order = _reorder(coco, path)
    labelled = {img["id"]: img for img in coco.get("images", []) if img.get("is_labeled")}
    tracks: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for ann in coco.get("annotations", []):
        image_id = ann.get("image_id")
        if not isinstance(image_id, int):
            raise FormatError(
                f"{path}: annotation {ann.get('id')} field image_id is not an integer"
            )
        image = labelled.get(image_id)
        if image is None:
            continue
        try:
            keypoints = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)[order]
            box = np.asarray(ann["bbox"], dtype=np.float64).reshape(4)
            track = int(ann["track_id"])
        except (KeyError, ValueError, IndexError, TypeError) as error:
            raise FormatError(f"{path}: annotation {ann.get('id')} field keypoints/bbox/track_id "
                              f"malformed ({error})") from error  # fmt: skip
        if not (np.isfinite(keypoints).all() and np.isfinite(box).all()):
            raise FormatError(f"{path}: annotation {ann.get('id')} field keypoints holds NaN")
        if not keypoints.any() or box[2] == 0 or box[3] == 0:
            continue
        tracks.setdefault(track, []).append((int(image["id"]), keypoints, box))
    for track, rows in sorted(tracks.items()):
        key = f"{DATASET}/{split}/{path.stem}/person{track}"
        if too_short(quarantine, key, path, "track_id", len(rows), rules.min_frames, unit=USABLE):
            continue
        rows.sort(key=lambda row: _frame_number(labelled[row[0]], path))
        keypoints = np.stack([row[1] for row in rows])
        visible = ~((keypoints[..., 0] == 0) & (keypoints[..., 1] == 0))
        keypoints[..., 2] = visible
        joints2d, _ = to_spin49(keypoints.astype(np.float32), "posetrack")
        boxes = np.stack([row[2] for row in rows])
        side = np.maximum(boxes[:, 2], boxes[:, 3]) * rules.bbox_enlarge
        bbox = np.stack(
            [boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2, side, side], 1
        )
        images = [root / labelled[row[0]]["file_name"] for row in rows]
        if _images_missing(images, key, path, "file_name", quarantine):
            continue
        yield _record(split, path.stem, track, images,
                      [_frame_number(labelled[row[0]], path) for row in rows],
                      joints2d, bbox, path, rules, f"{track}")  # fmt: skip


def _images_missing(
    images: list[Path], key: str, path: Path, field: str, quarantine: Quarantine | None
) -> bool:
    """A track whose image files are not all there is rejected (`field` names their source)."""
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        reject(quarantine, key, path, field, f"{len(missing)} image(s) missing, first {missing[0]}")
    return bool(missing)


def _frame_number(image: dict[str, Any], path: Path) -> int:
    """The frame's number in its video, from the image file name (e.g. `000012.jpg`)."""
    stem = Path(str(image.get("file_name", ""))).stem
    if not stem.isdigit():
        raise FormatError(f"{path}: image {image.get('id')} field file_name has no frame number")
    return int(stem)


def _record(
    split: str,
    name: str,
    person: int,
    images: list[Path],
    frames: list[int],
    joints2d: np.ndarray,
    bbox: np.ndarray,
    source: Path,
    rules: PoseTrackRules,
    salt: str,
    dataset: str = DATASET,
) -> SequenceRecord:
    length = len(images)
    record = SequenceRecord(
        dataset=dataset,
        split=split,
        name=name,
        person_id=person,
        fps=FPS,
        images=[ImageRef(str(p)) for p in images],
        frame_index=np.asarray(frames, dtype=np.int64),
        joints2d=joints2d.astype(np.float32),
        bbox=bbox.astype(np.float32),
        valid=np.ones(length, bool),
        content_hash=hash_files([source], extra=f"{salt}:{asdict(rules)}".encode()),
        crop_scale=rules.crop_scale,
        **no_3d_labels(length),
    )
    record.check()
    return record


def _unwrap(value: Any) -> Any:
    """PoseTrack 2017 wraps every scalar in a one-element list."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def read_posetrack2017(
    root: Path,
    split: str = "train",
    quarantine: Quarantine | None = None,
    rules: PoseTrackRules | None = None,
) -> Iterator[SequenceRecord]:
    """Yield one record per kept track of every `annotations/<split>/*.json` (2017 format)."""
    rules = rules or PoseTrackRules()
    yield from _each_video(
        Path(root) / "annotations" / split,
        "PoseTrack 2017",
        lambda path: _video_2017(Path(root), path, split, rules, quarantine),
        f"posetrack2017/{split}",
        "annolist",
        quarantine,
    )


def _points_2017(rect: dict[str, Any], path: Path) -> np.ndarray:
    keypoints = np.zeros((JOINTS_2017, 3))
    for point in _unwrap(rect.get("annopoints", [{}]) or [{}]).get("point", []):
        index = int(_unwrap(point["id"]))
        if not 0 <= index < JOINTS_2017:
            raise FormatError(f"{path}: field annopoints.point.id {index} outside 0..14")
        keypoints[index] = (float(_unwrap(point["x"])), float(_unwrap(point["y"])), 1.0)
    if not np.isfinite(keypoints).all():
        raise FormatError(f"{path}: field annopoints.point x/y holds NaN")
    return keypoints


def _video_2017(
    root: Path, path: Path, split: str, rules: PoseTrackRules, quarantine: Quarantine | None
) -> Iterator[SequenceRecord]:
    try:
        annolist = json.loads(path.read_text())["annolist"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise FormatError(f"{path}: field annolist unreadable ({error})") from error
    tracks: dict[int, list[tuple[int, Path, np.ndarray]]] = {}
    try:
        for number, entry in enumerate(annolist):
            if not _unwrap(entry.get("is_labeled", [1])) or not entry.get("annorect"):
                continue
            image = root / _unwrap(entry["image"])["name"]
            for rect in entry["annorect"]:
                keypoints = _points_2017(rect, path)
                if keypoints[:, 2].sum() >= 2:
                    tracks.setdefault(int(_unwrap(rect["track_id"])), []).append(
                        (number, image, keypoints)
                    )
    except (KeyError, TypeError, ValueError) as error:
        raise FormatError(f"{path}: field image/annorect malformed ({error})") from error
    for track, rows in sorted(tracks.items()):
        key = f"posetrack2017/{split}/{path.stem}/person{track}"
        if too_short(quarantine, key, path, "track_id", len(rows), rules.min_frames, unit=USABLE):
            continue
        keypoints = np.stack([row[2] for row in rows])
        joints2d, _ = to_spin49(keypoints, "posetrack2017")
        bbox = np.stack(
            [extent_bbox(k[k[:, 2] > 0, :2], rules.bbox_enlarge_2017) for k in keypoints]
        )
        images = [row[1] for row in rows]
        if _images_missing(images, key, path, "image.name", quarantine):
            continue
        yield _record(split, path.stem, track, images, [row[0] for row in rows], joints2d, bbox,
                      path, rules, f"{track}", dataset="posetrack2017")  # fmt: skip


def _each_video(
    folder: Path,
    label: str,
    read_video: Callable[[Path], Iterator[SequenceRecord]],
    key: str,
    field_name: str,
    quarantine: Quarantine | None,
) -> Iterator[SequenceRecord]:
    """Records of every `*.json` video file in `folder`; a malformed file is quarantined
    (or raised without a quarantine) and the others carry on."""
    files = sorted(folder.glob("*.json"))
    if not files:
        raise MissingFileError(f"{folder}: no {label} annotation files (*.json)")
    for path in files:
        try:
            yield from read_video(path)
        except FormatError as error:
            if quarantine is None:
                raise
            quarantine.add(f"{key}/{path.stem}", path, field_name, str(error))
