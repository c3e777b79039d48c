"""The person of the sample MPI-INF-3DHP, Human3.6M and InstaVariety files, seen by many cameras.

A walking SMPL clip (`pipeline.sample.figure`) is posed once; its joints are given names in
the richest list of the three datasets (MPI-INF-3DHP's 28, datasets.md §1.7) so each writer
picks its own joint order by name. The cameras of one sequence differ by a roll about the
optical axis: with the principal point at the image centre that is exactly an image
rotation, so one mesh rendering per frame serves every camera while each camera still has
its own 2D and 3D joint values.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from model.smpl import SMPL
from pipeline.sample.body import synthetic_smpl_arrays
from pipeline.sample.figure import Camera, MotionClip, background, render_body
from storage.layout import SPIN_JOINT_NAMES

MPII3D_NAMES: tuple[str, ...] = (
    "spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top",
    "left_clavicle", "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_clavicle", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot", "left_toe",
    "right_hip", "right_knee", "right_ankle", "right_foot", "right_toe",
)  # fmt: skip
INDEX = {name: i for i, name in enumerate(MPII3D_NAMES)}
_SPIN = {name: i for i, name in enumerate(SPIN_JOINT_NAMES)}
# Where each named joint comes from: a SPIN-49 joint, or one of the 24 SMPL skeleton joints.
_FROM_SPIN = {
    "spine": "Spine (H36M)", "pelvis": "hip", "neck": "neck", "head": "Head (H36M)",
    "head_top": "headtop", "left_shoulder": "lshoulder", "left_elbow": "lelbow",
    "left_wrist": "lwrist", "right_shoulder": "rshoulder", "right_elbow": "relbow",
    "right_wrist": "rwrist", "left_hip": "lhip", "left_knee": "lknee", "left_ankle": "lankle",
    "right_hip": "rhip", "right_knee": "rknee", "right_ankle": "rankle",
    "left_toe": "OP LBigToe", "right_toe": "OP RBigToe",
}  # fmt: skip
_FROM_SMPL24 = {
    "spine3": 9, "spine2": 6, "left_clavicle": 13, "right_clavicle": 14, "left_hand": 22,
    "right_hand": 23, "left_foot": 10, "right_foot": 11,
}  # fmt: skip
_BODY_SEED = 0
DEPTH = 4.0
"""Distance of the walking person from the canonical camera, metres."""


@lru_cache(maxsize=1)
def _body() -> SMPL:
    arrays = synthetic_smpl_arrays(_BODY_SEED)
    return SMPL(arrays, arrays["joint_regressor_extra"])


@dataclass(frozen=True)
class Actor:
    """One walking person: named joints and mesh in the canonical camera frame (metres)."""

    joints: np.ndarray
    """[T, 28, 3] in MPII3D_NAMES order."""
    vertices: np.ndarray
    """[T, V, 3]"""
    faces: np.ndarray


@lru_cache(maxsize=4)
def walking_actor(frames: int, seed: int) -> Actor:
    """A walking SMPL clip posed with the synthetic body; joints named by MPII3D_NAMES.

    Cached: the writers of several datasets share one clip (and its rendering) per seed.
    """
    body = _body()
    posed = MotionClip.walking(frames, seed=seed, depth=DEPTH).posed(body)
    joints = np.empty((frames, len(MPII3D_NAMES), 3))
    for name, spin_name in _FROM_SPIN.items():
        joints[:, INDEX[name]] = posed.joints49[:, _SPIN[spin_name]]
    for name, smpl_index in _FROM_SMPL24.items():
        joints[:, INDEX[name]] = posed.joints24[:, smpl_index]
    joints[:, INDEX["spine4"]] = (posed.joints24[:, 9] + posed.joints24[:, 12]) / 2
    return Actor(joints=joints, vertices=posed.vertices, faces=body.faces)


def intrinsics(width: int, height: int) -> np.ndarray:
    """Pinhole K (principal point at the centre) fitting a 2 m tall view at DEPTH metres."""
    focal = 0.85 * height * DEPTH / 2.0
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def roll(degrees: float) -> np.ndarray:
    """Rotation about the optical (z) axis, applied to camera-frame points."""
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def project(points: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Pixel coordinates (..., 2) of camera-frame points (..., 3) under intrinsics K."""
    uvw = points @ camera.T
    return uvw[..., :2] / uvw[..., 2:3]


@lru_cache(maxsize=4)
def _canonical(frames: int, seed: int, size: int) -> tuple[np.ndarray, ...]:
    person = walking_actor(frames, seed)
    camera = Camera(K=intrinsics(size, size), R=np.eye(3), t=np.zeros(3))
    backdrop = background((size, size), seed)
    return tuple(
        render_body(camera, vertices, person.faces, (size, size), backdrop)
        for vertices in person.vertices
    )


def render_views(
    frames: int, seed: int, size: int, rolls: tuple[float, ...], start: int = 0, stop: int = -1
) -> list[list[np.ndarray]]:
    """BGR frames [view][t] of `walking_actor(frames, seed)` seen through `intrinsics(size,
    size)` rolled by `rolls` degrees, for clip frames start..stop (stop -1: to the end).

    The principal point is the image centre and fx == fy, so rolling the camera rotates the
    image about that point; the canonical rendering is cached and shared.
    """
    canonical = _canonical(frames, seed, size)[start : None if stop < 0 else stop]
    centre = (size / 2, size / 2)
    views: list[list[np.ndarray]] = []
    for angle in rolls:
        warp = cv2.getRotationMatrix2D(centre, -angle, 1.0)
        views.append([
            cv2.warpAffine(frame, warp, (size, size), borderMode=cv2.BORDER_REFLECT)
            for frame in canonical
        ])  # fmt: skip
    return views
