"""Sample Human3.6M files in both layouts the pipeline reads (datasets.md §6).

`h36m/`: G. Moon's repackaging (TCMR's input) for subjects 1 (train) and 9 (test): image
folders `s_SS_act_02_subact_01_ca_{01,04}` of FRAMES JPEGs, `camera.json` (world -> camera
`R X + t`, mm), `joint_3d.json` (world mm, Moon's 17-joint order with the legs right
first, frame keys 0-based) and, for subject 1, a NeuralAnnot SMPL file.
`h36m_raw/`: the raw release for S1 and S9: `Pose` CDF files (D3_Positions world,
D3_Positions_mono camera, D2_Positions pixels; 32 joints), one `_ALL` file that readers
must skip, and mp4v `Videos/<Action>.<cam>.mp4`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from cdflib import cdfwrite

from pipeline.sample import actor
from pipeline.sample.figure import write_jpeg, write_video

FRAMES = 34
SIZE = 160
SUBJECTS = (1, 9)
CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")
MOON_FOLDERS = ((2, 1, 1), (2, 1, 4))  # (action, sub-action, camera 1..4)
RAW_ACTION = "Walking 1"
ROLLS = {1: (-9.0, -3.0, 4.0, 10.0), 9: (-6.0, 0.0, 7.0, 13.0)}
DEPTH_MM = actor.DEPTH * 1000.0
# Moon / I2L-MeshNet order (legs right first) and the actor joint each comes from.
MOON_JOINTS = (
    ("Pelvis", "pelvis"), ("R_Hip", "right_hip"), ("R_Knee", "right_knee"),
    ("R_Ankle", "right_ankle"), ("L_Hip", "left_hip"), ("L_Knee", "left_knee"),
    ("L_Ankle", "left_ankle"), ("Torso", "spine"), ("Neck", "neck"), ("Nose", "head"),
    ("Head_top", "head_top"), ("L_Shoulder", "left_shoulder"), ("L_Elbow", "left_elbow"),
    ("L_Wrist", "left_wrist"), ("R_Shoulder", "right_shoulder"), ("R_Elbow", "right_elbow"),
    ("R_Wrist", "right_wrist"),
)  # fmt: skip
# The 32 raw joints (metadata.xml order) and the actor joint each is placed at; the
# duplicates of the real data (Hips = Spine, Neck = both Shoulders) are kept.
RAW_JOINTS = (
    ("Hips", "pelvis"), ("RightUpLeg", "right_hip"), ("RightLeg", "right_knee"),
    ("RightFoot", "right_ankle"), ("RightToeBase", "right_foot"), ("Site", "right_toe"),
    ("LeftUpLeg", "left_hip"), ("LeftLeg", "left_knee"), ("LeftFoot", "left_ankle"),
    ("LeftToeBase", "left_foot"), ("Site", "left_toe"), ("Spine", "pelvis"),
    ("Spine1", "spine"), ("Neck", "neck"), ("Head", "head"), ("Site", "head_top"),
    ("LeftShoulder", "neck"), ("LeftArm", "left_shoulder"), ("LeftForeArm", "left_elbow"),
    ("LeftHand", "left_wrist"), ("LeftHandThumb", "left_hand"), ("Site", "left_hand"),
    ("L_Wrist_End", "left_hand"), ("Site", "left_hand"), ("RightShoulder", "neck"),
    ("RightArm", "right_shoulder"), ("RightForeArm", "right_elbow"),
    ("RightHand", "right_wrist"), ("RightHandThumb", "right_hand"), ("Site", "right_hand"),
    ("R_Wrist_End", "right_hand"), ("Site", "right_hand"),
)  # fmt: skip


def _pick(joints28: np.ndarray, table: tuple[tuple[str, str], ...]) -> np.ndarray:
    return joints28[..., [actor.INDEX[source] for _, source in table], :]


def _camera(subject: int, index: int) -> dict[str, Any]:
    """Camera `index` (0..3), 4 m from the world origin, views rolled about the optical axis.

    With `R` a roll, `R X + t` (t = the camera's distance along z) equals the actor's
    canonical camera frame rolled, so one rendering serves all four cameras.
    """
    intrinsic = actor.intrinsics(SIZE, SIZE)
    return {
        "R": actor.roll(ROLLS[subject][index]),
        "t": np.array([0.0, 0.0, DEPTH_MM]),
        "f": intrinsic[[0, 1], [0, 1]],
        "c": intrinsic[:2, 2],
    }


def _views(subject: int, seed: int) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """World joints (FRAMES, 28, 3) in mm around the origin, and frames [camera][t]."""
    person = actor.walking_actor(FRAMES, seed)
    views = actor.render_views(FRAMES, seed, SIZE, ROLLS[subject])
    return person.joints * 1000.0 - np.array([0.0, 0.0, DEPTH_MM]), views


def _to_camera(world: np.ndarray, camera: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    points = world @ camera["R"].T + camera["t"]
    uv = points[..., :2] / points[..., 2:3] * camera["f"] + camera["c"]
    return points, uv


def _write_json(path: Path, content: Any) -> None:
    temp = path.with_name(f".{path.name}.partial")
    temp.write_text(json.dumps(content))
    os.replace(temp, path)


def _write_moon(root: Path, seed: int, rendered: dict[int, Any]) -> dict[str, Any]:
    truth: dict[str, Any] = {}
    annotations = root / "annotations"
    annotations.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for subject in SUBJECTS:
        world, views = rendered[subject]
        cameras = {str(k + 1): _camera(subject, k) for k in range(4)}
        _write_json(annotations / f"Human36M_subject{subject}_camera.json",
                    {k: {n: v.tolist() for n, v in cam.items()} for k, cam in cameras.items()})  # fmt: skip
        moon = _pick(world, MOON_JOINTS)
        joints = {str(a): {str(s): {str(t): moon[t].tolist() for t in range(FRAMES)}}
                  for a, s, _ in MOON_FOLDERS[:1]}  # fmt: skip
        _write_json(annotations / f"Human36M_subject{subject}_joint_3d.json", joints)
        smpl: dict[str, Any] = {}
        for action, subaction, cam in MOON_FOLDERS:
            folder = f"s_{subject:02d}_act_{action:02d}_subact_{subaction:02d}_ca_{cam:02d}"
            points, uv = _to_camera(world, cameras[str(cam)])
            for t, image in enumerate(views[cam - 1]):
                write_jpeg(root / "images" / folder / f"{folder}_{t + 1:06d}.jpg", image)
            pose = rng.normal(0, 0.2, (FRAMES, 72))
            shape = rng.normal(0, 1, (FRAMES, 10))
            for t in range(FRAMES):
                entry = {"pose": pose[t].tolist(), "shape": shape[t].tolist()}
                smpl.setdefault(str(action), {}).setdefault(str(subaction), {}).setdefault(
                    str(t), {}
                )[str(cam)] = entry
            truth[folder] = {"camera_mm": points, "pixels": uv, "pose": pose, "shape": shape}
        if subject == SUBJECTS[0]:
            _write_json(annotations / f"Human36M_subject{subject}_SMPL_NeuralAnnot.json", smpl)
    return truth


def _write_cdf(path: Path, pose: np.ndarray) -> None:
    """`Pose` as a (1, N, D) double zVariable, like the release's CDF 3.3 files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".partial.{path.name}")
    temp.unlink(missing_ok=True)
    cdf = cdfwrite.CDF(str(temp), cdf_spec={"Majority": "row_major"})
    cdf.write_var(
        {"Variable": "Pose", "Data_Type": cdfwrite.CDF.CDF_DOUBLE, "Num_Elements": 1,
         "Rec_Vary": True, "Dim_Sizes": list(pose.shape[1:])},
        var_attrs={}, var_data=pose,
    )  # fmt: skip
    cdf.close()
    os.replace(temp, path)


def _write_raw(root: Path, rendered: dict[int, Any]) -> dict[str, Any]:
    truth: dict[str, Any] = {}
    for subject in SUBJECTS:
        base = root / f"S{subject}"
        world, views = rendered[subject]
        features = base / "MyPoseFeatures"
        _write_cdf(features / "D3_Positions" / f"{RAW_ACTION}.cdf",
                   _pick(world, RAW_JOINTS).reshape(1, FRAMES, 96))  # fmt: skip
        for index, cam_id in enumerate(CAMERA_IDS):
            points, uv = _to_camera(world, _camera(subject, index))
            name = f"{RAW_ACTION}.{cam_id}"
            _write_cdf(features / "D3_Positions_mono" / f"{name}.cdf",
                       _pick(points, RAW_JOINTS).reshape(1, FRAMES, 96))  # fmt: skip
            _write_cdf(features / "D2_Positions" / f"{name}.cdf",
                       _pick(uv, RAW_JOINTS).reshape(1, FRAMES, 64))  # fmt: skip
            write_video(base / "Videos" / f"{name}.mp4", views[index], fps=50.0)
            truth[f"S{subject}/{name}"] = {"camera_mm": points, "pixels": uv}
        _write_cdf(features / "D3_Positions_mono" / f"_ALL.{CAMERA_IDS[0]}.cdf",
                   np.zeros((1, 4, 96)))  # fmt: skip
    return truth


def write_h36m(root: Path, seed: int = 0) -> dict[str, Any]:
    """Write `root/h36m/` (Moon JSON) and `root/h36m_raw/` (raw release); return the truth.

    Truth per sequence: camera-frame joints in mm and pixels in the 28-joint actor
    order of `pipeline.sample.actor` (so tests can look joints up by name), and for
    the Moon folders the planted NeuralAnnot pose and shape.
    """
    moon_root, raw_root = Path(root) / "h36m", Path(root) / "h36m_raw"
    rendered = {subject: _views(subject, seed) for subject in SUBJECTS}
    return {
        "dir": moon_root, "raw_dir": raw_root,
        "json": _write_moon(moon_root, seed, rendered), "raw": _write_raw(raw_root, rendered),
    }  # fmt: skip
