"""The one schema every dataset reader yields: a sequence of one tracked person.

Arrays are frame-major (T frames) and use the store's 49-joint layout
(`storage.layout.SPIN_JOINT_NAMES`). Missing values are masked, never faked: a joint a
dataset does not provide has confidence / validity 0 and coordinates 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from storage.layout import NUM_JOINTS


@dataclass(frozen=True)
class RecordValue:
    """One bytes value inside one TFRecord record, re-read from the file when it is decoded.

    Records carry these instead of the bytes, so parsing, staging and planning never hold a
    dataset's encoded frames in memory or copy them; the length and CRC seen at parse time
    let the re-read detect a file that changed since.
    """

    offset: int
    """Byte offset of the record's length header in the file."""
    length: int
    """Payload length in bytes when the reader parsed the record."""
    crc: int
    """Masked CRC-32C of the payload when the reader parsed the record."""
    feature: str
    """Key of the bytes_list feature holding the value (e.g. `image/encoded`)."""
    index: int
    """Position of the value in that bytes_list (the frame within the track)."""


@dataclass(frozen=True)
class ImageRef:
    """Where one frame's pixels come from: an image file, a video frame, or a TFRecord value."""

    path: str
    """Image file, video file when `frame` is set, TFRecord file when `record` is set."""
    frame: int | None = None
    """0-based frame number inside the video at `path`."""
    record: RecordValue | None = None
    """Encoded image bytes inside the TFRecord at `path` (e.g. InstaVariety's JPEG crops)."""

    @property
    def kind(self) -> str:
        if self.record is not None:
            return "record"
        return "video" if self.frame is not None else "image"


@dataclass
class SequenceRecord:
    """One unbroken track of one person, in the store's layout.

    Shapes (T frames): images [T]; frame_index [T] int64 (frame number in the source);
    joints2d [T, 49, 3] float32 (pixels x, y, confidence); joints3d [T, 49, 4] float32
    (metres x, y, z, valid); pose [T, 72] and shape [T, 10] float32 with has_smpl [T]
    bool; bbox [T, 4] float32 (cx, cy, w, h in pixels, square by the dataset's rule);
    valid [T] bool (frame usable for evaluation, e.g. 3DPW campose_valid).
    """

    dataset: str
    split: str
    name: str
    person_id: int
    fps: float
    images: list[ImageRef]
    frame_index: np.ndarray
    joints2d: np.ndarray
    joints3d: np.ndarray
    pose: np.ndarray
    shape: np.ndarray
    has_smpl: np.ndarray
    bbox: np.ndarray
    valid: np.ndarray
    content_hash: str
    camera: dict[str, np.ndarray] | None = None
    crop_scale: float = 1.2
    """Crop scale the dataset's official rule applies to `bbox` when extracting features."""
    already_cropped: bool = False
    """True when frames are already 224x224 person crops (InstaVariety): no warp."""
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def has_3d(self) -> np.ndarray:
        """Per-frame flag: at least one valid 3D joint."""
        return self.joints3d[..., 3].any(axis=1)

    def check(self) -> None:
        """Raise ValueError naming the first array whose shape or values break the schema."""
        t = len(self.images)
        expected = {
            "frame_index": (t,), "joints2d": (t, 49, 3), "joints3d": (t, 49, 4),
            "pose": (t, 72), "shape": (t, 10), "has_smpl": (t,), "bbox": (t, 4), "valid": (t,),
        }  # fmt: skip
        for name, shape in expected.items():
            value = getattr(self, name)
            if value.shape != shape:
                raise ValueError(
                    f"{self.key}: field {name} has shape {value.shape}, expected {shape}"
                )
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ValueError(f"{self.key}: field {name} contains NaN or inf")

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.split}/{self.name}/person{self.person_id}"


def no_3d_labels(length: int) -> dict[str, np.ndarray]:
    """`joints3d`, `pose`, `shape` and `has_smpl` of a 2D-only sequence: all masked (zero).

    For the `SequenceRecord` fields of datasets that label no 3D joints and no SMPL
    (InstaVariety, Penn Action, PoseTrack).
    """
    return {
        "joints3d": np.zeros((length, NUM_JOINTS, 4), np.float32),
        "pose": np.zeros((length, 72), np.float32),
        "shape": np.zeros((length, 10), np.float32),
        "has_smpl": np.zeros(length, bool),
    }


@dataclass(frozen=True)
class Skip:
    """A sequence, person or frame range a reader left out, and why."""

    key: str
    """What was skipped, e.g. `3dpw/train/courtyard_basketball_00/person1`."""
    file: str
    """The source file the problem is in."""
    field: str
    """The field or array concerned (e.g. `poses2d`, `video frames`)."""
    reason: str


@dataclass
class Quarantine:
    """Skips collected while reading a dataset; the caller reads, saves or reports them."""

    skips: list[Skip] = field(default_factory=list)

    def add(self, key: str, file: Path | str, field_name: str, reason: str) -> None:
        self.skips.append(Skip(key, str(file), field_name, reason))

    def __len__(self) -> int:
        return len(self.skips)

    def as_rows(self) -> list[dict[str, str]]:
        return [vars(skip) for skip in self.skips]
