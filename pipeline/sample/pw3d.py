"""A small 3DPW in the release layout, written from the format description (datasets.md §3).

`3DPW/sequenceFiles/{train,validation,test}/<seq>.pkl` (Python 2 pickles, all 16 keys,
SMPL in the world frame, `cam_poses` world->camera) and `3DPW/imageFiles/<seq>/image_%05d.jpg`
showing the rendered people. The people move in the camera frame; world-frame parameters
are derived from the camera so that rotating the orientation back (as readers must)
recovers the camera-frame body. Returned truth is in the camera frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from model.smpl import SMPL
from pipeline.sample.figure import (
    Camera,
    MotionClip,
    background,
    render_body,
    synthetic_body,
    write_jpeg,
)
from pipeline.sample.py2pickle import dumps_py2
from storage.files import write_atomic
from storage.layout import SPIN_JOINT_NAMES

FRAME_SIZE = (256, 192)  # portrait, like the phone frames of the release (H, W)
# OpenPose COCO-18 order of `poses2d` (datasets.md §1.11), as BODY_25 names.
_COCO18_AS_BODY25 = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
)  # fmt: skip
_COCO18_ROWS = [SPIN_JOINT_NAMES.index(f"OP {name}") for name in _COCO18_AS_BODY25]
# (split, sequence, people, frames): the train sequence is longer than 40 frames.
SEQUENCES = (
    ("train", "courtyard_fake_00", 1, 48),
    ("validation", "downtown_fake_00", 2, 24),
    ("test", "outdoors_fake_00", 1, 24),
)
# Planted defects, by sequence: frames whose detections are all zero (the test person's
# first two frames: the known bbox-misalignment case; frame 21: a missed detection).
ZERO_DETECTIONS = {"outdoors_fake_00": (0, 1, 21)}
LOW_CONFIDENCE = (3, 7, 0.2)  # (frame, coco18 joint LWrist, conf) below the 0.3 threshold
CAMPOSE_INVALID = (5, 6)


@dataclass
class PersonTruth:
    """Camera-frame ground truth of one person, as planted."""

    joints49: np.ndarray
    """[N, 49, 3] SPIN joints in metres, camera frame."""
    joints14: np.ndarray
    """[N, 14, 3] evaluation joints (J_regressor_h36m -> H36M_TO_J14), camera frame."""
    poses2d: np.ndarray
    """[N, 18, 3] as written (x, y, conf)."""
    pose_cam: np.ndarray
    """[N, 72] with the global orientation in the camera frame."""
    betas: np.ndarray
    campose_valid: np.ndarray


@dataclass
class Pw3dTruth:
    root: Path
    people: dict[tuple[str, str, int], PersonTruth] = field(default_factory=dict)
    """(split, sequence, person) -> truth."""


def _camera_motion(frames: int, rng: np.random.Generator) -> np.ndarray:
    """World->camera extrinsics [N, 4, 4]: a hand-held camera that pans slightly."""
    poses = np.tile(np.eye(4), (frames, 1, 1))
    yaw = 0.1 * np.sin(np.linspace(0, np.pi, frames)) + rng.uniform(-0.2, 0.2)
    poses[:, :3, :3] = Rotation.from_euler(
        "yx", np.stack([yaw, np.full(frames, 0.05)], 1)
    ).as_matrix()
    poses[:, :3, 3] = rng.uniform(-0.3, 0.3, size=3)
    return poses


def _world_params(
    body: SMPL, clip: MotionClip, cam_poses: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """World-frame pose and trans that reproduce the camera-frame clip."""
    rotation, translation = cam_poses[:, :3, :3], cam_poses[:, :3, 3]
    root_cam = Rotation.from_rotvec(clip.pose[:, :3]).as_matrix()
    pose = clip.pose.copy()
    pose[:, :3] = Rotation.from_matrix(np.transpose(rotation, (0, 2, 1)) @ root_cam).as_rotvec()
    rest = body.pose_numpy(np.zeros((1, 72)), clip.betas[None]).joints24[0, 0]
    # SMPL rotates about the rest pelvis J0: x_cam = Rc (x_w) + tc must hold for every vertex.
    inner = clip.transl + rest - translation
    trans = np.einsum("nji,nj->ni", rotation, inner) - rest
    return pose, trans


def write_3dpw(root: Path, seed: int = 0, body: SMPL | None = None) -> Pw3dTruth:
    """Write the sample 3DPW under `root/3DPW`; returns the planted camera-frame truth."""
    body = body or synthetic_body(seed)
    base = Path(root) / "3DPW"
    truth = Pw3dTruth(root=base)
    rng = np.random.default_rng(seed + 3)
    height, width = FRAME_SIZE
    camera = Camera.simple(width, height, focal=260.0)
    for split, sequence, people, frames in SEQUENCES:
        cam_poses = _camera_motion(frames, rng)
        record: dict[str, list] = {key: [] for key in (
            "betas", "poses", "trans", "poses_60Hz", "trans_60Hz", "betas_clothed",
            "v_template_clothed", "genders", "texture_maps", "poses2d", "jointPositions",
            "campose_valid",
        )}  # fmt: skip
        meshes = []
        for person in range(people):
            clip = MotionClip.walking(frames, seed=seed * 100 + len(truth.people) + 7, depth=4.5)
            clip.transl[:, 0] += (person - (people - 1) / 2) * 1.0
            posed = clip.posed(body)
            meshes.append(posed.vertices)
            joints14 = body.joints14(torch.from_numpy(posed.vertices)).numpy()
            pixels = camera.project(posed.joints49[:, _COCO18_ROWS])
            conf = rng.uniform(0.5, 1.0, size=(frames, 18))
            poses2d = np.concatenate([pixels, conf[..., None]], axis=2)
            poses2d[LOW_CONFIDENCE[0], LOW_CONFIDENCE[1], 2] = LOW_CONFIDENCE[2]
            for frame in ZERO_DETECTIONS.get(sequence, ()):
                poses2d[frame] = 0.0
            valid = np.ones(frames, dtype=bool)
            valid[list(CAMPOSE_INVALID)] = person == 1
            pose_w, trans_w = _world_params(body, clip, cam_poses)
            joints_w = np.einsum(
                "nji,nkj->nki",
                cam_poses[:, :3, :3],
                posed.joints24 - cam_poses[:, None, :3, 3],
            )
            betas = np.concatenate([clip.betas, rng.normal(0, 0.1, size=6)])  # readers use [:10]
            record["betas"].append(betas)
            record["poses"].append(pose_w)
            record["trans"].append(trans_w)
            record["poses_60Hz"].append(np.repeat(pose_w, 2, axis=0))
            record["trans_60Hz"].append(np.repeat(trans_w, 2, axis=0))
            record["betas_clothed"].append(betas[:10] + 0.01)
            record["v_template_clothed"].append(posed.vertices[0].astype(np.float64))
            record["genders"].append("mf"[person % 2])
            record["texture_maps"].append(np.full((8, 8, 3), 128, dtype=np.uint8))
            record["poses2d"].append(np.transpose(poses2d, (0, 2, 1)))
            record["jointPositions"].append(joints_w.reshape(frames, 72))
            record["campose_valid"].append(valid)
            truth.people[(split, sequence, person)] = PersonTruth(
                joints49=posed.joints49, joints14=joints14, poses2d=poses2d,
                pose_cam=clip.pose, betas=clip.betas, campose_valid=valid,
            )  # fmt: skip
        data = {
            "sequence": sequence,
            **record,
            "img_frame_ids": np.arange(frames) * 2,
            "cam_poses": cam_poses,
            "cam_intrinsics": camera.K.copy(),
        }
        pickled = dumps_py2(data)
        path = base / "sequenceFiles" / split / f"{sequence}.pkl"
        write_atomic(path, lambda temporary, pickled=pickled: temporary.write_bytes(pickled))
        _render_sequence(base / "imageFiles" / sequence, camera, meshes, body.faces, seed)
    return truth


def _render_sequence(
    folder: Path, camera: Camera, meshes: list[np.ndarray], faces: np.ndarray, seed: int
) -> None:
    backdrop = background(FRAME_SIZE, seed)
    offsets = np.cumsum([0] + [mesh.shape[1] for mesh in meshes[:-1]])
    all_faces = np.concatenate([faces + offset for offset in offsets])
    for index in range(meshes[0].shape[0]):
        vertices = np.concatenate([mesh[index] for mesh in meshes])
        frame = render_body(camera, vertices, all_faces, FRAME_SIZE, backdrop)
        write_jpeg(folder / f"image_{index:05d}.jpg", frame)
