"""MPI-INF-3DHP reader: the training set (S1-S8) and the test set (TS1-TS6).

Train (datasets.md §4): `S{u}/Seq{s}/annot.mat` (MATLAB v5, 14x1 cells per camera),
`camera.calibration` (text), frames straight from `imageSequence/video_{k}.avi` or from
pre-extracted `video_{k}/*.jpg`. Test (§5): `mpi_inf_3dhp_test_set/TS{n}/annot_data.mat`
(MATLAB v7.3 = HDF5) and `imageSequence/img_%06d.jpg` (1-based).

Official VIBE/TCMR rules (tcmr.md §6) as defaults: the 8 "vnect" cameras; joints mapped
by name into the 49-joint layout; 3D in metres, root-relative at the pelvis; a frame with a
joint outside the image is dropped and starts a new segment; bbox = keypoint extent x 1.1;
crop scale 1.0 (train) / 1.2 (test); no temporal subsampling (25 or 50 fps kept).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from pipeline.bbox import extent_bbox
from pipeline.datasets.records import ImageRef, Quarantine, SequenceRecord
from pipeline.datasets.skips import reject, reject_error, too_short
from pipeline.datasets.video import probe_video
from pipeline.joints import SPIN_INDEX, to_spin49
from storage.errors import FormatError, MissingFileError
from storage.hashing import hash_files
from storage.layout import SEQLEN

DATASET = "mpii3d"
VNECT_CAMERAS = (0, 1, 2, 4, 5, 6, 7, 8)
# Sequences recorded at 50 fps (mpii_get_sequence_info.m); all others at 25 fps.
FIFTY_FPS = frozenset({(1, 2), (3, 1), (3, 2), (5, 1), (5, 2)})
_PELVIS = SPIN_INDEX["hip"]
_CALIBRATION_HEADER = "Skeletool Camera Calibration File V1.0"


@dataclass(frozen=True)
class Mpii3dRules:
    """Official preprocessing rules (VIBE/TCMR), recorded in a store's provenance."""

    cameras: tuple[int, ...] = VNECT_CAMERAS
    bbox_enlarge: float = 1.1
    train_crop_scale: float = 1.0
    test_crop_scale: float = 1.2
    min_length: int = SEQLEN
    """Segments shorter than this cannot fill one window and are recorded as skipped."""
    test_fps: float = 25.0
    """Not stated by the sources for the test set."""


def read_calibration(path: Path) -> dict[int, dict[str, np.ndarray]]:
    """Cameras of a `camera.calibration` file: {id: {K, R, t (metres), size (w, h)}}."""
    if not path.is_file():
        raise MissingFileError(f"{path}: camera.calibration is missing")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not text ({exc})") from exc
    if not lines or lines[0].strip() != _CALIBRATION_HEADER:
        raise FormatError(f"{path}: first line is not {_CALIBRATION_HEADER!r}")
    raw: dict[int, dict[str, list[float]]] = {}
    current: dict[str, list[float]] | None = None
    for number, line in enumerate(lines[1:], start=2):
        tokens = line.split()
        if not tokens:
            continue
        key, values = tokens[0], tokens[1:]
        try:
            numbers = [float(v) for v in values]
        except ValueError as exc:
            raise FormatError(f"{path}: line {number}: field {key} is not numeric") from exc
        if key == "name":
            if len(numbers) != 1:
                raise FormatError(f"{path}: line {number}: field name needs one camera id")
            current = raw.setdefault(int(numbers[0]), {})
        elif current is None:
            raise FormatError(f"{path}: line {number}: field {key} before any camera name")
        else:
            current[key] = numbers
    cameras = {}
    for camera, fields in raw.items():
        for key, size in (("intrinsic", 16), ("extrinsic", 16), ("size", 2)):
            if len(fields.get(key, [])) != size:
                raise FormatError(f"{path}: camera {camera}: field {key} needs {size} numbers")
        intrinsic = np.reshape(fields["intrinsic"], (4, 4))
        extrinsic = np.reshape(fields["extrinsic"], (4, 4))
        cameras[camera] = {
            "K": intrinsic[:3, :3].astype(np.float32),
            "R": extrinsic[:3, :3].astype(np.float32),
            "t": (extrinsic[:3, 3] / 1000.0).astype(np.float32),
            "size": np.asarray(fields["size"], np.float32),
        }
    return cameras


def _cell(annot: dict, name: str, camera: int, width: int, path: Path) -> np.ndarray:
    """One camera's (F, width) array of a 14x1 cell variable of annot.mat."""
    if name not in annot:
        raise FormatError(f"{path}: field {name} is missing")
    cells = np.asarray(annot[name]).reshape(-1)
    if camera >= cells.size:
        raise FormatError(f"{path}: field {name} has {cells.size} cells, no camera {camera}")
    try:
        array = np.asarray(cells[camera], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"{path}: field {name}{{{camera}}} is not numeric ({exc})") from exc
    if array.ndim != 2 or array.shape[1] != width:
        raise FormatError(
            f"{path}: field {name}{{{camera}}} has shape {array.shape}, expected (F, {width})"
        )
    return array


def _segments(keep: np.ndarray) -> list[np.ndarray]:
    """Runs of consecutive kept rows, in order."""
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) > 1) + 1
    return np.split(rows, breaks)


def _inside(joints2d: np.ndarray, mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Per frame: every provided joint is finite and inside [0, w) x [0, h)."""
    xy = joints2d[:, mask, :2]
    finite = np.isfinite(xy).all(axis=(1, 2))
    xy = np.nan_to_num(xy, nan=-1.0)
    within = (xy[..., 0] >= 0) & (xy[..., 0] < width) & (xy[..., 1] >= 0) & (xy[..., 1] < height)
    return finite & within.all(axis=1)


def _frames(sequence: Path, camera: int) -> tuple[list[ImageRef], int, int, list[Path]]:
    """(frame references, width, height, source files) of one camera: the video first,
    else the extracted JPEGs."""
    video = sequence / "imageSequence" / f"video_{camera}.avi"
    if video.is_file():
        info = probe_video(video)
        refs = [ImageRef(path=str(video), frame=k) for k in range(info.frames)]
        return refs, info.width, info.height, [video]
    folder = sequence / f"video_{camera}"
    images = sorted(folder.glob("*.jpg"))
    if not images:
        raise MissingFileError(f"{video}: no video and no extracted frames in {folder}")
    first = cv2.imread(str(images[0]))
    if first is None:
        raise FormatError(f"{images[0]}: image cannot be decoded (field: frames)")
    height, width = first.shape[:2]
    return [ImageRef(path=str(p)) for p in images], width, height, images


@dataclass
class _Track:
    """One camera's (train) or one sequence's (test) annotated frames, before segmenting."""

    key: str
    split: str
    joints2d: np.ndarray
    mask2d: np.ndarray
    joints3d: np.ndarray
    mask3d: np.ndarray
    images: list[ImageRef]
    frame_numbers: np.ndarray
    valid: np.ndarray
    size: tuple[int, int]
    fps: float
    crop_scale: float
    content_hash: str
    camera: dict[str, np.ndarray] | None
    source: Path


def _records(
    track: _Track, rules: Mpii3dRules, quarantine: Quarantine | None
) -> Iterator[SequenceRecord]:
    """Split a track into in-image segments and build one record per usable segment."""
    keep = _inside(track.joints2d, track.mask2d, *track.size)
    keep &= np.isfinite(track.joints3d[:, track.mask3d]).all(axis=(1, 2))
    dropped = np.flatnonzero(~keep)
    if dropped.size and quarantine is not None:
        quarantine.add(
            f"{DATASET}/{track.split}/{track.key}", track.source, "annot2",
            f"{dropped.size} frame(s) with a joint outside the image or NaN dropped "
            f"(rows {dropped[:10].tolist()}...); segments split there",
        )  # fmt: skip
    for number, rows in enumerate(_segments(keep)):
        name = f"{track.key}_seg{number}"
        key = f"{DATASET}/{track.split}/{name}"
        if too_short(
            quarantine,
            key,
            track.source,
            "frames",
            rows.size,
            rules.min_length,
            rule="min_length",
            unit="frames in the segment",
        ):
            continue
        j2d = track.joints2d[rows].astype(np.float32)
        j3d = track.joints3d[rows] - track.joints3d[rows, _PELVIS : _PELVIS + 1]
        j3d[:, ~track.mask3d] = 0.0
        validity = np.broadcast_to(track.mask3d, (rows.size, 49))[..., None]
        bbox = np.stack([extent_bbox(frame[track.mask2d, :2], rules.bbox_enlarge) for frame in j2d])
        record = SequenceRecord(
            dataset=DATASET,
            split=track.split,
            name=name,
            person_id=0,
            fps=track.fps,
            images=[track.images[r] for r in rows],
            frame_index=track.frame_numbers[rows].astype(np.int64),
            joints2d=j2d,
            joints3d=np.concatenate([j3d, validity], axis=2).astype(np.float32),
            pose=np.zeros((rows.size, 72), np.float32),
            shape=np.zeros((rows.size, 10), np.float32),
            has_smpl=np.zeros(rows.size, bool),
            bbox=bbox,
            valid=track.valid[rows].astype(bool),
            content_hash=track.content_hash,
            camera=track.camera,
            crop_scale=track.crop_scale,
        )
        record.check()
        yield record


def _to_spin(
    joints: np.ndarray, convention: str, confidence: bool
) -> tuple[np.ndarray, np.ndarray]:
    if confidence:
        joints = np.concatenate([joints, np.ones((*joints.shape[:2], 1))], axis=2)
    spin, mask = to_spin49(joints, convention)
    if confidence:
        spin[..., 2] = mask
    return spin, mask


def _numbered(paths: list[Path], prefix: str) -> list[tuple[int, Path]]:
    found = []
    for path in paths:
        match = re.fullmatch(rf"{prefix}(\d+)", path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def _read_train(
    root: Path, rules: Mpii3dRules, quarantine: Quarantine | None
) -> Iterator[SequenceRecord]:
    subjects = _numbered(list(root.iterdir()), "S")
    if not subjects:
        raise MissingFileError(f"{root}: no S<n>/ subject folders of the MPI-INF-3DHP train set")
    for subject, subject_dir in subjects:
        for seq, sequence in _numbered(list(subject_dir.iterdir()), "Seq"):
            annot_path = sequence / "annot.mat"
            seq_key = f"subj{subject}_seq{seq}"
            try:
                annot = scipy.io.loadmat(str(annot_path))
            except (OSError, ValueError, TypeError, MatReadError) as exc:
                reject(quarantine, f"{DATASET}/train/{seq_key}", annot_path, "annot.mat",
                        f"cannot be read as MATLAB v5: {exc}")  # fmt: skip
                continue
            calibration_path = sequence / "camera.calibration"
            try:
                cameras = read_calibration(calibration_path)
            except (FormatError, MissingFileError) as exc:
                reject_error(quarantine, f"{DATASET}/train/{seq_key}", calibration_path,
                             "camera.calibration", exc)  # fmt: skip
                continue
            fps = 50.0 if (subject, seq) in FIFTY_FPS else 25.0
            try:
                frame_numbers_all = np.asarray(annot.get("frames", []), np.int64).reshape(-1)
            except (TypeError, ValueError) as exc:
                reject(quarantine, f"{DATASET}/train/{seq_key}", annot_path, "frames",
                        f"not numeric ({exc})")  # fmt: skip
                continue
            for camera in rules.cameras:
                key = f"{seq_key}_vid{camera}"
                try:
                    annot2 = _cell(annot, "annot2", camera, 56, annot_path)
                    annot3 = _cell(annot, "annot3", camera, 84, annot_path)
                    images, width, height, sources = _frames(sequence, camera)
                except (FormatError, MissingFileError) as exc:
                    reject_error(quarantine, f"{DATASET}/train/{key}", annot_path, "camera", exc)
                    continue
                if annot2.shape[0] != annot3.shape[0]:
                    reject(quarantine, f"{DATASET}/train/{key}", annot_path, "annot3",
                            f"{annot3.shape[0]} rows but annot2 has {annot2.shape[0]}")  # fmt: skip
                    continue
                count = min(annot2.shape[0], len(images))
                if len(images) < annot2.shape[0]:
                    reason = (
                        f"{annot2.shape[0]} annotation rows but {len(images)} frames: "
                        f"rows {count}..{annot2.shape[0] - 1} have no image and are left out"
                    )
                    if quarantine is None:
                        warnings.warn(f"{sources[0]}: {reason}", stacklevel=2)
                    else:
                        quarantine.add(f"{DATASET}/train/{key}", sources[0], "video frames", reason)
                joints2d, mask2d = _to_spin(annot2[:count].reshape(count, 28, 2), "mpii3d", True)
                joints3d, mask3d = _to_spin(annot3[:count].reshape(count, 28, 3) / 1000.0,
                                            "mpii3d", False)  # fmt: skip
                numbers = (
                    frame_numbers_all[:count]
                    if frame_numbers_all.size >= count
                    else np.arange(count, dtype=np.int64)
                )
                calib = cameras.get(camera)
                track = _Track(
                    key, "train", joints2d, mask2d, joints3d, mask3d, images[:count], numbers,
                    np.ones(count, bool), (width, height), fps, rules.train_crop_scale,
                    hash_files([annot_path, calibration_path], extra=_fingerprint(sources)),
                    None if calib is None else {k: calib[k] for k in ("K", "R", "t")},
                    annot_path,
                )  # fmt: skip
                yield from _records(track, rules, quarantine)


def _fingerprint(paths: list[Path]) -> bytes:
    """Cheap identity of large media files: names, sizes and the first and last MiB."""
    digest = bytearray()
    for path in paths:
        size = path.stat().st_size
        digest += f"{path.name}:{size};".encode()
        with open(path, "rb") as handle:
            digest += handle.read(1 << 20)
            if size > 2 << 20:
                handle.seek(-(1 << 20), 2)
                digest += handle.read()
    return bytes(digest)


def _dataset(handle: h5py.File, name: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    if name not in handle:
        raise FormatError(f"{path}: field {name} is missing")
    if not isinstance(handle[name], h5py.Dataset):
        raise FormatError(f"{path}: field {name} is not a dataset")
    try:
        array = np.asarray(handle[name][()], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"{path}: field {name} is not numeric ({exc})") from exc
    if array.shape[1:] != shape:
        raise FormatError(
            f"{path}: field {name} has shape {array.shape}, expected (n, {', '.join(map(str, shape))})"
        )
    return array


def _read_test(
    root: Path, split: str, rules: Mpii3dRules, quarantine: Quarantine | None
) -> Iterator[SequenceRecord]:
    test_root = root / "mpi_inf_3dhp_test_set"
    sequences = _numbered(list(test_root.iterdir()), "TS") if test_root.is_dir() else []
    if not sequences:
        raise MissingFileError(f"{test_root}: no TS<n>/ folders of the MPI-INF-3DHP test set")
    for number, folder in sequences:
        path = folder / "annot_data.mat"
        key = f"subj{number}"
        try:
            with h5py.File(path, "r") as handle:
                annot2 = _dataset(handle, "annot2", (1, 17, 2), path)[:, 0]
                annot3 = _dataset(handle, "univ_annot3", (1, 17, 3), path)[:, 0]
                valid = _dataset(handle, "valid_frame", (1,), path)[:, 0] > 0
        except (OSError, FormatError) as exc:
            reject_error(quarantine, f"{DATASET}/{split}/{key}", path, "annot_data.mat", exc)
            continue
        count = annot2.shape[0]
        if annot3.shape[0] != count or valid.shape[0] != count:
            reject(quarantine, f"{DATASET}/{split}/{key}", path, "univ_annot3",
                    "annot2, univ_annot3 and valid_frame differ in frame count")  # fmt: skip
            continue
        images = [folder / "imageSequence" / f"img_{i + 1:06d}.jpg" for i in range(count)]
        present = np.array([p.is_file() for p in images])
        if not present.any():
            reject(quarantine, f"{DATASET}/{split}/{key}", folder, "imageSequence",
                    "no img_%06d.jpg frame found")  # fmt: skip
            continue
        first = images[int(np.flatnonzero(present)[0])]
        header = cv2.imread(str(first))
        if header is None:
            reject(quarantine, f"{DATASET}/{split}/{key}", first, "imageSequence",
                    "the frame cannot be decoded, so the image size is unknown")  # fmt: skip
            continue
        height, width = header.shape[:2]
        if not present.all() and quarantine is not None:
            quarantine.add(f"{DATASET}/{split}/{key}", folder, "imageSequence",
                           f"{int((~present).sum())} frame image(s) missing; segments split")  # fmt: skip
        joints2d, mask2d = _to_spin(annot2, "mpii3d_test", True)
        joints3d, mask3d = _to_spin(annot3 / 1000.0, "mpii3d_test", False)
        joints2d[~present] = np.nan  # a missing image drops its frame like an outside joint
        track = _Track(
            key, split, joints2d, mask2d, joints3d, mask3d,
            [ImageRef(path=str(p)) for p in images], np.arange(count), valid, (width, height),
            rules.test_fps, rules.test_crop_scale,
            hash_files([path], extra=_fingerprint([p for p in images if p.is_file()][:1])),
            None, path,
        )  # fmt: skip
        yield from _records(track, rules, quarantine)


def read_mpii3d(
    root: Path,
    split: str = "train",
    quarantine: Quarantine | None = None,
    rules: Mpii3dRules | None = None,
) -> Iterator[SequenceRecord]:
    """Yield one record per in-image segment of every camera (train) or test sequence.

    `split` is `train` or `test` (`val` is accepted: VIBE/TCMR call the test set so).
    Names follow VIBE: `subj{u}_seq{s}_vid{k}_seg{j}` (train), `subj{n}_seg{j}` (test).
    """
    rules = rules or Mpii3dRules()
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"{root}: MPI-INF-3DHP root folder does not exist")
    if split == "train":
        yield from _read_train(root, rules, quarantine)
    elif split in ("test", "val"):
        yield from _read_test(root, split, rules, quarantine)
    else:
        raise FormatError(
            f"MPI-INF-3DHP split must be train, test or val, not {split!r} (field `split`)"
        )
