"""A walking stick-figure skeleton for the sample MPI-INF-3DHP, Human3.6M and InstaVariety files.

The sample writers need 3D joints with real names in each dataset's own joint order, and
frames that show a person-like shape moving like those joints. A 28-joint skeleton in the
MPI-INF-3DHP order (the richest of the three lists) swings its arms and legs and drifts
across the view; each writer picks its dataset's joints from it by name.
"""

from __future__ import annotations

import cv2
import numpy as np

# Official MPI-INF-3DHP order (`mpii_get_joint_set('all')`, datasets.md §1.7).
MPII3D_NAMES: tuple[str, ...] = (
    "spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top",
    "left_clavicle", "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_clavicle", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot", "left_toe",
    "right_hip", "right_knee", "right_ankle", "right_foot", "right_toe",
)  # fmt: skip

# Standing pose in mm, camera-like axes (x right, y down, z away), pelvis at the origin,
# the person facing the camera (their left side at +x).
_LEFT_TEMPLATE = {
    "clavicle": (60.0, -480.0, 0.0),
    "shoulder": (180.0, -470.0, 0.0),
    "elbow": (230.0, -200.0, 20.0),
    "wrist": (250.0, 40.0, 0.0),
    "hand": (255.0, 120.0, 0.0),
    "hip": (100.0, 0.0, 0.0),
    "knee": (110.0, 450.0, 0.0),
    "ankle": (115.0, 880.0, 0.0),
    "foot": (115.0, 930.0, -40.0),
    "toe": (115.0, 950.0, -140.0),
}
_CENTRE_TEMPLATE = {
    "spine3": (0.0, -350.0, 0.0),
    "spine4": (0.0, -440.0, 0.0),
    "spine2": (0.0, -250.0, 0.0),
    "spine": (0.0, -120.0, 0.0),
    "pelvis": (0.0, 0.0, 0.0),
    "neck": (0.0, -520.0, 0.0),
    "head": (0.0, -620.0, -20.0),
    "head_top": (0.0, -760.0, 0.0),
}
_LIMBS = (
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("left_ankle", "left_toe"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("right_ankle", "right_toe"),
    ("neck", "head"),
)  # fmt: skip
_TORSO = ("left_shoulder", "right_shoulder", "right_hip", "left_hip")
INDEX = {name: i for i, name in enumerate(MPII3D_NAMES)}


def _template() -> np.ndarray:
    joints = np.zeros((len(MPII3D_NAMES), 3))
    for name, xyz in _CENTRE_TEMPLATE.items():
        joints[INDEX[name]] = xyz
    for part, (x, y, z) in _LEFT_TEMPLATE.items():
        joints[INDEX[f"left_{part}"]] = (x, y, z)
        joints[INDEX[f"right_{part}"]] = (-x, y, z)
    return joints


def _swing(joints: np.ndarray, pivot: str, names: tuple[str, ...], angle: float) -> None:
    """Rotate the named joints about `pivot` in the image plane (in place)."""
    c, s = np.cos(angle), np.sin(angle)
    centre = joints[INDEX[pivot], :2].copy()
    for name in names:
        x, y = joints[INDEX[name], :2] - centre
        joints[INDEX[name], :2] = centre + np.array([c * x - s * y, s * x + c * y])


def walk(frames: int, seed: int, depth_mm: float = 4000.0) -> np.ndarray:
    """(T, 28, 3) joints in mm in a camera frame: limbs swing, the body drifts sideways."""
    rng = np.random.default_rng(seed)
    period = rng.uniform(14.0, 22.0)
    phase0 = rng.uniform(0, 2 * np.pi)
    drift = rng.uniform(-400.0, 400.0)
    base = _template()
    out = np.empty((frames, len(MPII3D_NAMES), 3))
    for t in range(frames):
        joints = base.copy()
        phase = phase0 + 2 * np.pi * t / period
        arm = 0.5 * np.sin(phase)
        leg = 0.35 * np.sin(phase)
        for side, sign in (("left", 1.0), ("right", -1.0)):
            lower_arm = (f"{side}_elbow", f"{side}_wrist", f"{side}_hand")
            _swing(joints, f"{side}_shoulder", lower_arm, sign * arm)
            lower_leg = tuple(f"{side}_{p}" for p in ("knee", "ankle", "foot", "toe"))
            _swing(joints, f"{side}_hip", lower_leg, sign * leg)
        progress = t / max(frames - 1, 1)
        joints[:, 0] += drift * (2 * progress - 1)
        joints[:, 2] += depth_mm + 150.0 * np.sin(phase / 2)
        out[t] = joints
    return out


def intrinsics(width: int, height: int, depth_mm: float = 4000.0) -> np.ndarray:
    """Pinhole K whose view fits a 1.8 m person at `depth_mm` into 80% of the height."""
    focal = 0.8 * height * depth_mm / 1800.0
    return np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])


def project(points: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Pixel coordinates (..., 2) of camera-frame points (..., 3) under intrinsics K."""
    uvw = points @ camera.T
    return uvw[..., :2] / uvw[..., 2:3]


def background(width: int, height: int, seed: int) -> np.ndarray:
    """A plain textured backdrop (smooth colour noise), BGR uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 200, size=(6, 8, 3), dtype=np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def draw(canvas: np.ndarray, points2d: np.ndarray) -> np.ndarray:
    """Draw the figure (28 pixel points in MPI-INF-3DHP order) onto a copy of `canvas`."""
    image = canvas.copy()
    pts = points2d.astype(np.float64)
    span = float(np.linalg.norm(pts[INDEX["head_top"]] - pts[INDEX["pelvis"]]))
    width = max(2, int(span / 7))
    torso = np.round([pts[INDEX[n]] for n in _TORSO]).astype(np.int32)
    cv2.fillConvexPoly(image, torso, (40, 60, 170), lineType=cv2.LINE_AA)
    for a, b in _LIMBS:
        pa = tuple(int(v) for v in np.round(pts[INDEX[a]]))
        pb = tuple(int(v) for v in np.round(pts[INDEX[b]]))
        cv2.line(image, pa, pb, (60, 90, 200), width, lineType=cv2.LINE_AA)
    head = tuple(int(v) for v in np.round((pts[INDEX["head"]] + pts[INDEX["head_top"]]) / 2))
    cv2.circle(image, head, max(2, int(span / 9)), (120, 160, 220), -1, lineType=cv2.LINE_AA)
    return image
