"""Human3.6M reader: G. Moon's JSON repackaging (what TCMR reads) or the raw release.

`source="json"` (datasets.md §6b): `images/s_SS_act_AA_subact_ss_ca_CC/*_%06d.jpg`,
`annotations/Human36M_subject{S}_{camera,joint_3d}.json` and, when present,
`Human36M_subject{S}_SMPL_NeuralAnnot.json`. Joints are in Moon's order, whose legs are
right first; mapping by name puts them in the right slots (TCMR swaps pairs by index).
World joints become camera joints by `R X + t` and pixels by the pinhole f, c.

`source="raw"` (§6a): `S{n}/MyPoseFeatures/D3_Positions_mono/<Action>.<cam>.cdf`
(camera-frame mm) and `D2_Positions/<Action>.<cam>.cdf` (px), 32 joints each, of which
SPIN's 17 (`H36M_RAW_TO_17`, VIBE h36m order, named left/right by the skeleton itself)
are kept; frames are `Videos/<Action>.<cam>.mp4`; `_ALL` files are skipped; the
camera intrinsics are fitted to the 3D/2D pairs (`metadata.xml` is not decoded).

Official TCMR rules as defaults: train subjects 1, 5, 6, 7, 8, test 9, 11; every 2nd frame
(50 -> 25 fps); 3D in metres root-relative at the pelvis; 2D confidence 1; smoothed bbox
(vis 0.3, sigma 8) x 0.9 ("tight"); crop scale 1.0; optionally the front camera only.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cdflib
import numpy as np

from pipeline.bbox import smooth_bbox
from pipeline.datasets.records import ImageRef, Quarantine, SequenceRecord
from pipeline.datasets.skips import reject, reject_error, too_short
from pipeline.datasets.video import probe_video
from pipeline.joints import SPIN_INDEX, to_spin49
from storage.errors import FormatError, MissingFileError
from storage.layout import SEQLEN

DATASET = "h36m"
SOURCE_FPS = 50.0
SUBJECTS = {"train": (1, 5, 6, 7, 8), "test": (9, 11)}
FRONT_CAMERA = {"json": "4", "raw": "60457274"}
SUBSAMPLED = "frames after subsampling"
"""What a run's length counts, in the skip reason of a run that is too short."""
# SPIN's pick of 17 of the 32 raw joints, in VIBE h36m order (datasets.md §1.6).
H36M_RAW_TO_17 = (11, 6, 7, 8, 1, 2, 3, 12, 24, 14, 15, 17, 18, 19, 25, 26, 27)
_PELVIS = SPIN_INDEX["hip"]
_FOLDER = re.compile(r"s_(\d+)_act_(\d+)_subact_(\d+)_ca_(\d+)")


@dataclass(frozen=True)
class H36mRules:
    """Official TCMR preprocessing rules, recorded in a store's provenance."""

    source: str = "json"
    subjects: dict[str, tuple[int, ...]] = field(default_factory=lambda: dict(SUBJECTS))
    step: int = 2
    front_only: bool = False
    bbox_vis_thresh: float = 0.3
    bbox_enlarge: float = 0.9
    bbox_sigma: float = 8.0
    crop_scale: float = 1.0
    min_length: int = SEQLEN


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise MissingFileError(f"{path}: Human3.6M annotation file is missing")
    try:
        with open(path, "rb") as handle:
            content = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(content, dict):
        raise FormatError(f"{path}: the top level is not an object keyed as Moon's files are")
    return content


def _entry(table: dict, keys: tuple[str, ...], path: Path) -> object | None:
    """`table[k0][k1]...`, None where a key is absent; a level that is not an object is a
    FormatError naming the key path (`act/subact/frame`)."""
    value: object = table
    for depth, key in enumerate(keys):
        if not isinstance(value, dict):
            raise FormatError(f"{path}: field {'/'.join(keys[:depth])} is not an object")
        if key not in value:
            return None
        value = value[key]
    return value


def _array(value: object, shape: tuple[int, ...], path: Path, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"{path}: field {name} is not numeric") from exc
    if array.shape != shape:
        raise FormatError(f"{path}: field {name} has shape {array.shape}, expected {shape}")
    return array


def _build(
    key: str,
    split: str,
    joints2d17: np.ndarray,
    joints3d17_m: np.ndarray,
    convention: str,
    kept: np.ndarray,
    images: list[ImageRef],
    frame_index: np.ndarray,
    rules: H36mRules,
    content_hash: str,
    camera: dict[str, np.ndarray] | None,
    pose: np.ndarray | None,
    shape: np.ndarray | None,
    has_smpl: np.ndarray | None,
) -> SequenceRecord:
    """A record of the `kept` rows of a run's full-rate (50 fps) joints.

    The box is smoothed over every frame of the run and then subsampled, as the official
    script does (datasets.md §6b): smoothing only the kept frames would stretch the median
    and Gaussian filters over twice the time.
    """
    count = len(images)
    joints3d, mask = to_spin49(joints3d17_m[kept], convention)
    joints3d = joints3d - joints3d[:, _PELVIS : _PELVIS + 1]
    joints3d[:, ~mask] = 0.0
    validity = np.broadcast_to(mask, (count, 49))[..., None]
    points = np.concatenate([joints2d17, np.ones((len(joints2d17), 17, 1))], axis=2)
    joints2d, _ = to_spin49(points, convention)
    bbox, _ = smooth_bbox(
        joints2d, rules.bbox_vis_thresh, rules.bbox_enlarge, sigma=rules.bbox_sigma
    )
    joints2d, bbox = joints2d[kept], bbox[kept]
    return SequenceRecord(
        dataset=DATASET,
        split=split,
        name=key,
        person_id=0,
        fps=SOURCE_FPS / rules.step,
        images=images,
        frame_index=frame_index.astype(np.int64),
        joints2d=joints2d.astype(np.float32),
        joints3d=np.concatenate([joints3d, validity], axis=2).astype(np.float32),
        pose=np.zeros((count, 72), np.float32) if pose is None else pose.astype(np.float32),
        shape=np.zeros((count, 10), np.float32) if shape is None else shape.astype(np.float32),
        has_smpl=np.zeros(count, bool) if has_smpl is None else has_smpl,
        bbox=bbox,
        valid=np.ones(count, bool),
        content_hash=content_hash,
        camera=camera,
        crop_scale=rules.crop_scale,
    )


def _runs(keep: np.ndarray) -> list[np.ndarray]:
    """Runs of consecutive kept rows: a sequence is split at frames it lacks, never bridged."""
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        return []
    return np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)


def _smpl(
    table: dict | None, act: str, subact: str, cam: str, frames: list[int], path: Path
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """NeuralAnnot pose/shape per frame ([act][subact][frame][cam]) where present."""
    if table is None:
        return None, None, None
    pose = np.zeros((len(frames), 72))
    shape = np.zeros((len(frames), 10))
    has = np.zeros(len(frames), bool)
    for row, frame in enumerate(frames):
        entry = _entry(table, (act, subact, str(frame), cam), path)
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise FormatError(f"{path}: field {act}/{subact}/{frame}/{cam} is not an object")
        pose[row] = _array(entry.get("pose"), (72,), path, f"{act}/{subact}/{frame}/{cam}/pose")
        shape[row] = _array(entry.get("shape"), (10,), path, f"{act}/{subact}/{frame}/{cam}/shape")
        has[row] = True
    return pose, shape, has


def _camera_params(
    cameras: dict, cam: str, path: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(R, t mm, f, c) of camera `cam` in a `Human36M_subject{S}_camera.json`."""
    if not isinstance(cameras.get(cam), dict):
        raise FormatError(f"{path}: field {cam} (camera) is missing")
    params = cameras[cam]
    return (
        _array(params.get("R"), (3, 3), path, f"{cam}/R"),
        _array(params.get("t"), (3,), path, f"{cam}/t"),
        _array(params.get("f"), (2,), path, f"{cam}/f"),
        _array(params.get("c"), (2,), path, f"{cam}/c"),
    )


def _world_joints(
    joints: dict, act: str, subact: str, numbers: list[int], path: Path
) -> np.ndarray:
    """(N, 17, 3) world joints in mm of the given 0-based frames; NaN where a frame has none."""
    table = _entry(joints, (act, subact), path)
    table = {} if table is None else table
    if not isinstance(table, dict):
        raise FormatError(f"{path}: field {act}/{subact} is not an object")
    world = np.full((len(numbers), 17, 3), np.nan)
    for row, number in enumerate(numbers):
        if str(number) in table:
            world[row] = _array(table[str(number)], (17, 3), path, f"{act}/{subact}/{number}")
    return world


def _read_json(
    root: Path, split: str, rules: H36mRules, quarantine: Quarantine | None
) -> Iterator[SequenceRecord]:
    images_root = root / "images"
    if not images_root.is_dir():
        raise MissingFileError(f"{images_root}: Human3.6M image folders are missing")
    folders: dict[int, list[tuple[Path, re.Match[str]]]] = {}
    for folder in sorted(images_root.iterdir()):
        match = _FOLDER.fullmatch(folder.name)
        if match and folder.is_dir():
            folders.setdefault(int(match.group(1)), []).append((folder, match))
    for subject in rules.subjects[split]:
        if subject not in folders:
            continue
        annotations = root / "annotations"
        camera_path = annotations / f"Human36M_subject{subject}_camera.json"
        joints_path = annotations / f"Human36M_subject{subject}_joint_3d.json"
        smpl_path = annotations / f"Human36M_subject{subject}_SMPL_NeuralAnnot.json"
        try:
            cameras, joints = _load_json(camera_path), _load_json(joints_path)
            smpl_table = _load_json(smpl_path) if smpl_path.is_file() else None
        except (FormatError, MissingFileError) as exc:
            reject_error(quarantine, f"{DATASET}/{split}/S{subject}", annotations,
                         "annotations", exc)  # fmt: skip
            continue
        for folder, match in folders[subject]:
            act, subact, cam = (str(int(match.group(k))) for k in (2, 3, 4))
            if rules.front_only and cam != FRONT_CAMERA["json"]:
                continue
            key = folder.name
            try:
                rotation, translation, focal, centre = _camera_params(cameras, cam, camera_path)
            except FormatError as exc:
                reject_error(quarantine, f"{DATASET}/{split}/{key}", camera_path, cam, exc)
                continue
            files = sorted(folder.glob("*.jpg"))
            numbers = [int(p.stem.rsplit("_", 1)[-1]) - 1 for p in files]
            try:
                world = _world_joints(joints, act, subact, numbers, joints_path)
            except FormatError as exc:
                reject_error(quarantine, f"{DATASET}/{split}/{key}", joints_path, "joint_3d", exc)
                continue
            present = np.isfinite(world).all(axis=(1, 2))
            if not present.all():
                lost = [numbers[i] for i in np.flatnonzero(~present)]
                reject(quarantine, f"{DATASET}/{split}/{key}", joints_path, f"{act}/{subact}",
                        f"no joints or NaN joints for frames {lost[:10]}; "
                        "the sequence is split there")  # fmt: skip
            intrinsic = np.array([[focal[0], 0, centre[0]], [0, focal[1], centre[1]], [0, 0, 1]])
            camera = {
                "K": intrinsic.astype(np.float32), "R": rotation.astype(np.float32),
                "t": (translation / 1000.0).astype(np.float32),
            }  # fmt: skip
            runs = _runs(present)
            for index, rows in enumerate(runs):
                name = key if len(runs) == 1 else f"{key}_seg{index}"
                kept = rows[rows % rules.step == 0]
                if too_short(
                    quarantine,
                    f"{DATASET}/{split}/{name}",
                    folder,
                    "images",
                    kept.size,
                    rules.min_length,
                    rule="min_length",
                    unit=SUBSAMPLED,
                ):
                    continue
                run_files = [files[i] for i in kept]
                run_numbers = [numbers[i] for i in kept]
                camera_mm = world[rows] @ rotation.T + translation
                pixels = camera_mm[..., :2] / camera_mm[..., 2:3] * focal + centre
                digest = hashlib.sha256(world[rows].tobytes() + rotation.tobytes())
                digest.update(translation.tobytes())
                for path in run_files:
                    digest.update(f"{path.name}:{path.stat().st_size};".encode())
                try:
                    pose, shape, has = _smpl(smpl_table, act, subact, cam, run_numbers, smpl_path)
                except FormatError as exc:
                    reject_error(quarantine, f"{DATASET}/{split}/{name}", smpl_path, "pose", exc)
                    continue
                record = _build(
                    name, split, pixels, camera_mm / 1000.0, "h36m_moon", kept - rows[0],
                    [ImageRef(path=str(p)) for p in run_files], np.asarray(run_numbers), rules,
                    digest.hexdigest(), camera, pose, shape, has,
                )  # fmt: skip
                record.check()
                yield record


def _pose(path: Path, width: int) -> np.ndarray:
    """The `Pose` variable of a CDF file as (N, 32, width // 32)."""
    try:
        data = np.asarray(cdflib.CDF(str(path)).varget("Pose"), dtype=np.float64)
    except (OSError, ValueError, KeyError) as exc:
        raise FormatError(f"{path}: field Pose cannot be read ({exc})") from exc
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2 or data.shape[1] != width:
        raise FormatError(f"{path}: field Pose has shape {data.shape}, expected (1, N, {width})")
    return data.reshape(len(data), 32, width // 32)


def _fit_camera(camera_mm: np.ndarray, pixels: np.ndarray) -> dict[str, np.ndarray] | None:
    """Pinhole intrinsics fitted to the D3_Positions_mono / D2_Positions pairs.

    The release encodes its calibration in `metadata.xml`; the camera-frame 3D joints and
    their pixels determine fx, fy, cx, cy (least squares of u = fx x/z + cx, v = fy y/z + cy)
    without it. Poses are already in the camera frame, so R = I and t = 0. None when the
    points cannot determine a camera (e.g. a joint at depth 0).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = (camera_mm[..., :2] / camera_mm[..., 2:3]).reshape(-1, 2)
    if not np.isfinite(normalised).all() or np.ptp(normalised, axis=0).min() <= 0:
        return None
    flat = pixels.reshape(-1, 2)
    intrinsic = np.eye(3)
    for axis in range(2):
        design = np.stack([normalised[:, axis], np.ones(len(flat))], axis=1)
        (focal, centre), *_ = np.linalg.lstsq(design, flat[:, axis], rcond=None)
        intrinsic[axis, axis], intrinsic[axis, 2] = focal, centre
    return {
        "K": intrinsic.astype(np.float32),
        "R": np.eye(3, dtype=np.float32),
        "t": np.zeros(3, dtype=np.float32),
    }


def _read_raw(
    root: Path, split: str, rules: H36mRules, quarantine: Quarantine | None
) -> Iterator[SequenceRecord]:
    for subject in rules.subjects[split]:
        base = root / f"S{subject}"
        mono = base / "MyPoseFeatures" / "D3_Positions_mono"
        if not mono.is_dir():
            continue
        for path3d in sorted(mono.glob("*.cdf")):
            stem, _, cam = path3d.stem.rpartition(".")
            if stem.startswith("_ALL") or not stem:
                continue
            if rules.front_only and cam != FRONT_CAMERA["raw"]:
                continue
            key = f"S{subject}_{stem.replace(' ', '_')}.{cam}"
            path2d = base / "MyPoseFeatures" / "D2_Positions" / path3d.name
            video = base / "Videos" / f"{stem}.{cam}.mp4"
            try:
                if not path2d.is_file():
                    raise MissingFileError(f"{path2d}: D2_Positions file is missing")
                joints3d = _pose(path3d, 96)[:, H36M_RAW_TO_17]
                joints2d = _pose(path2d, 64)[:, H36M_RAW_TO_17]
                info = probe_video(video)
            except (FormatError, MissingFileError) as exc:
                reject_error(quarantine, f"{DATASET}/{split}/{key}", path3d, "Pose", exc)
                continue
            if len(joints2d) != len(joints3d):
                reject(quarantine, f"{DATASET}/{split}/{key}", path2d, "Pose",
                        f"{len(joints2d)} frames but D3_Positions_mono has {len(joints3d)}")  # fmt: skip
                continue
            count = min(len(joints3d), info.frames)
            if info.frames < len(joints3d):
                reason = (
                    f"{len(joints3d)} pose frames but {info.frames} video frames; rest left out"
                )
                if quarantine is None:
                    warnings.warn(f"{video}: {reason}", stacklevel=2)
                else:
                    quarantine.add(f"{DATASET}/{split}/{key}", video, "video frames", reason)
            joints3d, joints2d = joints3d[:count], joints2d[:count]
            rows = np.arange(0, count, rules.step)
            finite = np.isfinite(joints3d).all(axis=(1, 2)) & np.isfinite(joints2d).all(axis=(1, 2))
            if not finite.all():
                reject(quarantine, f"{DATASET}/{split}/{key}", path3d, "Pose",
                        f"NaN coordinates in frames {np.flatnonzero(~finite)[:10].tolist()}")  # fmt: skip
                continue
            if too_short(
                quarantine,
                f"{DATASET}/{split}/{key}",
                path3d,
                "Pose",
                rows.size,
                rules.min_length,
                rule="min_length",
                unit=SUBSAMPLED,
            ):
                continue
            digest = hashlib.sha256(joints3d.tobytes() + joints2d.tobytes())
            digest.update(f"{video.name}:{video.stat().st_size}".encode())
            record = _build(
                key, split, joints2d, joints3d / 1000.0, "h36m", rows,
                [ImageRef(path=str(video), frame=int(r)) for r in rows], rows, rules,
                digest.hexdigest(), _fit_camera(joints3d[rows], joints2d[rows]), None, None, None,
            )  # fmt: skip
            record.check()
            yield record


def read_h36m(
    root: Path,
    split: str = "train",
    quarantine: Quarantine | None = None,
    rules: H36mRules | None = None,
) -> Iterator[SequenceRecord]:
    """Yield one record per (subject, action, sub-action, camera) sequence of the split.

    `root` is Moon's `h36m/` folder (`rules.source == "json"`) or the raw release folder
    holding `S1`, `S5`, ... (`rules.source == "raw"`).
    """
    rules = rules or H36mRules()
    root = Path(root)
    if split not in rules.subjects:
        raise FormatError(
            f"Human3.6M split must be one of {sorted(rules.subjects)}, not {split!r} (field `split`)"
        )
    if rules.step < 1:
        raise ValueError(f"Human3.6M frame step must be >= 1, not {rules.step}")
    if not root.is_dir():
        raise MissingFileError(f"{root}: Human3.6M root folder does not exist")
    if rules.source == "json":
        yield from _read_json(root, split, rules, quarantine)
    elif rules.source == "raw":
        yield from _read_raw(root, split, rules, quarantine)
    else:
        raise ValueError(f"Human3.6M source must be 'json' or 'raw', not {rules.source!r}")
