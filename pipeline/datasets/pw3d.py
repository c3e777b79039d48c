"""3DPW reader: `sequenceFiles/<split>/*.pkl` (Python 2 pickles) into one record per person.

Official rules (VIBE/TCMR `threedpw_utils`, datasets.md §3.4, tcmr.md §6), all parameters:
global orientation rotated into the camera frame with `cam_poses`; 3D joints from the
neutral SMPL (49 SPIN joints for train, the 14 evaluation joints of `J_regressor_h36m` for
validation/test, placed at spin 25..38); 2D from `poses2d` (OpenPose COCO-18) with
confidence binarised at 0.3 and mapped to the 12 LSP limb joints (neck and head top masked);
HMMR's smoothed bbox x 1.1; frames with at most 6 visible joints dropped; `valid` =
`campose_valid`. Two deliberate differences from the official script: the smoothed box is
computed on the same frames as every other array (the official box is not trimmed when a
person's first frames have no detection, which misaligns it), and SMPL is posed with the
translation mapped into the camera frame too, so 3D joints are true camera coordinates
(root-relative values are identical to the official ones). In the train split dropped frames
split a person into unbroken segments, so no training window spans a jump in time; in
validation and test a person's kept frames stay one sequence across the gaps, as in the
official dbs, so evaluation windows and frame counts are the published protocol's (34,561
test frames). Sequences shorter than `min_frames` are recorded as skips.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from model.smpl import SMPL
from pipeline.bbox import smooth_bbox
from pipeline.datasets.records import ImageRef, Quarantine, SequenceRecord
from pipeline.datasets.segments import runs
from pipeline.datasets.skips import reject_error, too_short
from pipeline.joints import SPIN_INDEX, to_spin49
from storage.errors import FormatError, MissingFileError
from storage.hashing import hash_files
from storage.layout import SEQLEN
from storage.settings import get_settings

DATASET = "3dpw"
SPLITS = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
FPS = 30.0
# The LSP limb joints VIBE keeps from poses2d; neck and head top (from the nose) are masked.
_LIMB_JOINTS = ("rankle", "rknee", "rhip", "lhip", "lknee", "lankle",
                "rwrist", "relbow", "rshoulder", "lshoulder", "lelbow", "lwrist")  # fmt: skip
_REQUIRED = ("sequence", "betas", "poses", "trans", "poses2d", "cam_poses", "campose_valid",
             "cam_intrinsics")  # fmt: skip


@dataclass(frozen=True)
class Pw3dRules:
    """The official preprocessing choices (defaults as in VIBE/TCMR)."""

    vis_thresh: float = 0.3
    min_visible: int = 6
    """A frame is kept when more than this many of the 14 joints are visible."""
    bbox_enlarge: float = 1.1
    bbox_sigma: float = 8.0
    crop_scale: float = 1.2
    """Crop scale of the released TCMR dbs (the script says 1.3; tcmr.md §6)."""
    min_frames: int = SEQLEN
    """Sequences shorter than one window are skipped."""
    split_eval_at_gaps: bool = False
    """Split validation/test people at dropped frames too (train always splits); the official
    evaluation keeps them whole, its windows spanning the gaps."""
    joints3d_train: str = "spin49"
    """`spin49` (TCMR train) or `j14` (the evaluation joints); val/test always use `j14`."""


def load_pw3d_pickle(path: Path) -> dict[str, Any]:
    """A 3DPW sequence file: a Python 2 pickle, so text and buffers are read as latin-1."""
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, AttributeError) as error:
        raise FormatError(f"{path}: not a readable 3DPW pickle ({error})") from error
    if not isinstance(data, dict):
        raise FormatError(f"{path}: expected a dict, found {type(data).__name__}")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise FormatError(f"{path}: field(s) {', '.join(missing)} missing")
    people = data["poses"]
    if not isinstance(people, list | tuple) and np.ndim(people) < 1:
        raise FormatError(f"{path}: field poses is not a list with one entry per person")
    return data


def load_body(base_data: Path | None = None) -> SMPL:
    """The neutral SMPL with SPIN's extra and H36M regressors, from the base-data folder.

    A missing `J_regressor_h36m.npy` is reported only when a split needs the 14 joints.
    """
    return SMPL.from_settings("neutral", get_settings(base_data=base_data))


def _field(
    data: dict[str, Any],
    key: str,
    person: int | None,
    shape: tuple,
    path: Path,
    flatten: bool = False,
) -> np.ndarray:
    """`data[key]` (or its person entry) as float64 of the given shape (-1 = any).

    `flatten` accepts any layout of the values (betas are documented as "10x1").
    """
    try:
        value = data[key] if person is None else data[key][person]
        array = np.asarray(value, dtype=np.float64)
        array = array.ravel() if flatten else array
    except (IndexError, TypeError, ValueError) as error:
        raise FormatError(
            f"{path}: field {key} for person {person} unreadable ({error})"
        ) from error
    if array.ndim != len(shape) or any(
        s not in (-1, a) for s, a in zip(shape, array.shape, strict=True)
    ):
        raise FormatError(f"{path}: field {key} has shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        raise FormatError(f"{path}: field {key} contains NaN or inf")
    return array


def _joints2d(poses2d: np.ndarray, rules: Pw3dRules) -> np.ndarray:
    """[N, 49, 3]: the 12 limb joints at their spin slots, confidence binarised."""
    mapped, _ = to_spin49(poses2d, "3dpw")
    out = np.zeros_like(mapped)
    rows = [SPIN_INDEX[name] for name in _LIMB_JOINTS]
    out[:, rows, :2] = mapped[:, rows, :2]
    out[:, rows, 2] = mapped[:, rows, 2] > rules.vis_thresh
    out[:, rows, :2] *= out[:, rows, 2:3]  # invisible joints are masked, not kept at (x, y)
    return out


def read_3dpw(
    root: Path,
    split: str,
    quarantine: Quarantine | None = None,
    body: SMPL | None = None,
    base_data: Path | None = None,
    rules: Pw3dRules | None = None,
) -> Iterator[SequenceRecord]:
    """Yield one record per person (and unbroken segment) of `root/sequenceFiles/<split>`."""
    if split not in SPLITS:
        raise FormatError(
            f"3DPW split must be one of {', '.join(SPLITS)}, got {split!r} (field `split`)"
        )
    rules = rules or Pw3dRules()
    if rules.joints3d_train not in ("spin49", "j14"):
        raise ValueError(f"joints3d_train must be 'spin49' or 'j14', got {rules.joints3d_train!r}")
    folder = Path(root) / "sequenceFiles" / SPLITS[split]
    files = sorted(folder.glob("*.pkl"))
    if not files:
        raise MissingFileError(f"{folder}: no 3DPW sequence files (*.pkl)")
    body = body or load_body(base_data)
    for path in files:
        key = f"{DATASET}/{SPLITS[split]}/{path.stem}"
        try:
            data = load_pw3d_pickle(path)
            people = len(data["poses"])
        except (FormatError, TypeError) as error:
            reject_error(quarantine, key, path, "pickle", error)
            continue
        for person in range(people):
            try:
                yield from _person(
                    Path(root), path, data, person, SPLITS[split], body, rules, quarantine
                )
            except FormatError as error:
                reject_error(quarantine, f"{key}/person{person}", path, "person", error)


def _person(
    root: Path,
    path: Path,
    data: dict[str, Any],
    person: int,
    split: str,
    body: SMPL,
    rules: Pw3dRules,
    quarantine: Quarantine | None,
) -> Iterator[SequenceRecord]:
    sequence = path.stem
    key = f"{DATASET}/{split}/{sequence}/person{person}"
    pose = _field(data, "poses", person, (-1, 72), path)
    count = len(pose)
    trans = _field(data, "trans", person, (count, 3), path)
    betas = _field(data, "betas", person, (-1,), path, flatten=True)
    if betas.size < 10:
        raise FormatError(
            f"{path}: field betas has {betas.size} values for person {person}, expected >= 10"
        )
    poses2d = _field(data, "poses2d", person, (count, 3, 18), path).transpose(0, 2, 1)
    cam_poses = _field(data, "cam_poses", None, (count, 4, 4), path)
    campose_valid = _field(data, "campose_valid", person, (count,), path).astype(bool)
    intrinsics = _field(data, "cam_intrinsics", None, (3, 3), path)

    visible = poses2d[:, :, 2] > rules.vis_thresh
    if not visible.any():
        raise FormatError(f"{path}: field poses2d has no visible joint for person {person}")
    bbox, boxed = smooth_bbox(poses2d, rules.vis_thresh, rules.bbox_enlarge, sigma=rules.bbox_sigma)
    joints2d = _joints2d(poses2d, rules)
    common_visible = joints2d[:, 25:39, 2].sum(axis=1)
    keep = boxed & (common_visible > rules.min_visible)

    rotation, translation = cam_poses[:, :3, :3], cam_poses[:, :3, 3]
    pose_cam = pose.copy()
    pose_cam[:, :3] = Rotation.from_matrix(
        rotation @ Rotation.from_rotvec(pose[:, :3]).as_matrix()
    ).as_rotvec()
    shape = np.repeat(betas[None, :10], count, axis=0)
    rest = body.pose_numpy(np.zeros((1, 72)), shape[:1]).joints24[0, 0]
    # SMPL turns about the rest pelvis, so the camera-frame translation is Rc (t + J0) + tc - J0.
    trans_cam = np.einsum("nij,nj->ni", rotation, trans + rest) + translation - rest
    posed = body.pose_numpy(pose_cam, shape, trans_cam)
    joints3d = np.zeros((count, 49, 4), dtype=np.float64)
    if split == "train" and rules.joints3d_train == "spin49":
        joints3d[..., :3] = posed.joints49
        joints3d[..., 3] = 1.0
    else:
        j14 = body.joints14(torch.from_numpy(posed.vertices)).numpy()
        placed, mask = to_spin49(j14, "common")
        joints3d[..., :3] = placed
        joints3d[:, mask, 3] = 1.0

    images = [root / "imageFiles" / sequence / f"image_{i:05d}.jpg" for i in range(count)]
    dropped = int((~keep).sum())
    if dropped and quarantine is not None:
        quarantine.add(key, path, "poses2d", f"{dropped} of {count} frames without a box or "
                       f"with <= {rules.min_visible} visible joints dropped")  # fmt: skip
    whole = split != "train" and not rules.split_eval_at_gaps
    parts = [np.flatnonzero(keep)] if whole else [np.arange(a, b) for a, b in runs(keep)]
    for number, frames in enumerate(parts):
        name = sequence if whole or keep.all() else f"{sequence}_seg{number}"
        seg_key = f"{DATASET}/{split}/{name}/person{person}"
        if too_short(quarantine, seg_key, path, "frames", len(frames), rules.min_frames):
            continue
        missing = [str(images[i]) for i in frames if not images[i].is_file()]
        if missing:
            raise FormatError(
                f"{path}: imageFiles lacks {len(missing)} frame(s), first {missing[0]}"
            )
        record = SequenceRecord(
            dataset=DATASET,
            split=split,
            name=name,
            person_id=person,
            fps=FPS,
            images=[ImageRef(str(images[i])) for i in frames],
            frame_index=frames.astype(np.int64),
            joints2d=joints2d[frames].astype(np.float32),
            joints3d=joints3d[frames].astype(np.float32),
            pose=pose_cam[frames].astype(np.float32),
            shape=shape[frames].astype(np.float32),
            has_smpl=np.ones(len(frames), dtype=bool),
            bbox=bbox[frames].astype(np.float32),
            valid=campose_valid[frames],
            content_hash=hash_files(
                [path], extra=f"{person}:{frames[0]}:{frames[-1] + 1}:{asdict(rules)}".encode()
            ),
            camera={
                "K": intrinsics.astype(np.float32),
                "cam_poses": cam_poses[frames].astype(np.float32),
            },
            crop_scale=rules.crop_scale,
        )
        record.check()
        yield record
