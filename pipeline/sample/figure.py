"""A moving synthetic person for the sample datasets: SMPL motion, camera, renderer, writers.

The sample images and videos must show a person-like shape that moves, so crops taken by
the official bbox rules contain a figure, not noise. A `MotionClip` is a smooth walking-in-
place SMPL pose trajectory; `model.smpl.SMPL` poses it; a pinhole `Camera` projects it;
`render` paints the mesh as flat-shaded triangles over a textured background.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from model.smpl import SMPL, PosedBodies
from pipeline.overlay import write_bgr_video
from pipeline.sample.body import synthetic_smpl_arrays
from storage.files import write_atomic

# SMPL joint indices driven by the walking motion.
_L_HIP, _R_HIP, _L_KNEE, _R_KNEE = 1, 2, 4, 5
_L_SHOULDER, _R_SHOULDER, _L_ELBOW, _R_ELBOW = 16, 17, 18, 19
# Faces are painted in this many depth slabs x shade levels (one cv2.fillPoly call each),
# which is the painter's algorithm at slab resolution and fast enough for hundreds of frames.
_DEPTH_SLABS = 24
_SHADE_LEVELS = 8


@lru_cache(maxsize=2)
def synthetic_body(seed: int = 0) -> SMPL:
    """The sample's neutral body (the base data's `SMPL_NEUTRAL` of the same seed), built once."""
    arrays = synthetic_smpl_arrays(seed)
    return SMPL(arrays, arrays["joint_regressor_extra"], arrays["joint_regressor_h36m"])


@dataclass
class MotionClip:
    """SMPL parameters of one person over T frames, in a camera frame (x right, y down, z ahead)."""

    pose: np.ndarray
    """[T, 72] axis-angle; the global orientation already turns the body upright for y-down."""
    betas: np.ndarray
    """[10] shape coefficients."""
    transl: np.ndarray
    """[T, 3] root translation in metres."""
    fps: float = 30.0

    def __len__(self) -> int:
        return len(self.pose)

    @classmethod
    def walking(
        cls,
        frames: int,
        seed: int = 0,
        fps: float = 30.0,
        depth: float = 4.0,
        sway: float = 0.4,
    ) -> MotionClip:
        """Walking in place with arm swing, a slow turn and a side-to-side drift."""
        rng = np.random.default_rng(seed)
        time = np.arange(frames) / fps
        freq = rng.uniform(0.8, 1.2)
        phase = 2 * np.pi * freq * time + rng.uniform(0, 2 * np.pi)
        swing = np.sin(phase)
        pose = np.zeros((frames, 72))
        yaw = rng.uniform(-0.6, 0.6) + 0.5 * np.sin(2 * np.pi * time / max(time[-1], 1.0) / 2)
        upright = Rotation.from_rotvec([np.pi, 0.0, 0.0])
        pose[:, 0:3] = (upright * Rotation.from_rotvec(np.outer(yaw, [0, 1, 0]))).as_rotvec()

        def rotate(joint: int, axis: int, angle: np.ndarray) -> None:
            pose[:, 3 * joint + axis] += angle

        rotate(_L_HIP, 0, -0.5 * swing)
        rotate(_R_HIP, 0, 0.5 * swing)
        rotate(_L_KNEE, 0, 0.6 * np.clip(swing, 0, None))
        rotate(_R_KNEE, 0, 0.6 * np.clip(-swing, 0, None))
        rotate(_L_SHOULDER, 2, np.full(frames, -1.2))
        rotate(_R_SHOULDER, 2, np.full(frames, 1.2))
        rotate(_L_SHOULDER, 1, 0.4 * swing)
        rotate(_R_SHOULDER, 1, 0.4 * swing)
        rotate(_L_ELBOW, 1, np.full(frames, 0.3) + 0.2 * swing)
        rotate(_R_ELBOW, 1, np.full(frames, -0.3) + 0.2 * swing)
        pose[:, 3:] += rng.normal(0, 0.02, size=(1, 69))
        transl = np.zeros((frames, 3))
        transl[:, 0] = sway * np.sin(2 * np.pi * time / max(time[-1] * 1.5, 1.0))
        transl[:, 2] = depth + 0.3 * np.sin(2 * np.pi * time / max(time[-1], 1.0))
        betas = rng.normal(0, 0.5, size=10)
        return cls(pose=pose, betas=betas, transl=transl, fps=fps)

    def posed(self, body: SMPL) -> PosedBodies:
        """Vertices and joints of every frame."""
        betas = np.repeat(self.betas[None], len(self), axis=0)
        return body.pose_numpy(self.pose, betas, self.transl)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: x_cam = R @ x_world + t; pixels = K @ x_cam / z."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray

    @classmethod
    def simple(cls, width: int, height: int, focal: float | None = None) -> Camera:
        """Camera at the world origin looking along +z, principal point at the image centre."""
        focal = focal if focal is not None else 1.5 * max(width, height)
        K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
        return cls(K=K, R=np.eye(3), t=np.zeros(3))

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points) @ self.R.T + self.t

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixel coordinates [..., 2] of world points [..., 3]."""
        cam = self.to_camera(points)
        pixels = cam @ self.K.T
        return pixels[..., :2] / pixels[..., 2:3]


def background(frame_size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A plain textured backdrop (floor/wall gradient, soft stripes, grain) as BGR uint8."""
    height, width = frame_size
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, height)[:, None]
    cols = np.linspace(0, 1, width)[None, :]
    base = rng.uniform(90, 170, size=3)
    stripes = 12 * np.sin(2 * np.pi * (cols * rng.uniform(3, 8) + rows * rng.uniform(0, 2)))
    image = base[None, None, :] + 50 * (rows - 0.5)[..., None] + stripes[..., None]
    image = image + rng.normal(0, 6, size=(height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def render(
    frame_size: tuple[int, int],
    vertices_2d: np.ndarray,
    faces: np.ndarray,
    depth: np.ndarray,
    shade: np.ndarray | None = None,
    backdrop: np.ndarray | None = None,
    colour: Sequence[float] = (70, 110, 200),
) -> np.ndarray:
    """Paint triangles far to near over a backdrop; returns an (H, W, 3) uint8 BGR image.

    vertices_2d [V, 2] pixels, faces [F, 3], depth [V] (larger = farther), shade [F] in
    [0, 1] (per-face brightness, e.g. from normals; 1 everywhere when absent).
    """
    height, width = frame_size
    image = backdrop.copy() if backdrop is not None else np.full((height, width, 3), 128, np.uint8)
    face_depth = depth[faces].mean(axis=1)
    in_front = face_depth > 0
    faces = faces[in_front]
    face_depth = face_depth[in_front]
    shade = np.ones(len(faces)) if shade is None else np.asarray(shade)[in_front]
    if len(faces) == 0:
        return image
    # Fixed-point coordinates (4 fractional bits) keep sub-pixel triangles from vanishing.
    points = np.round(vertices_2d * 16).astype(np.int32)[faces]
    lo, hi = face_depth.min(), face_depth.max()
    slab = np.minimum(
        ((hi - face_depth) / max(hi - lo, 1e-9) * _DEPTH_SLABS).astype(int), _DEPTH_SLABS - 1
    )
    level = np.clip((shade * _SHADE_LEVELS).astype(int), 0, _SHADE_LEVELS - 1)
    group = slab * _SHADE_LEVELS + level  # far slabs first, then by shade
    order = np.argsort(group, kind="stable")
    groups, starts = np.unique(group[order], return_index=True)
    base = np.asarray(colour, dtype=np.float64)
    for key, polygons in zip(groups, np.split(points[order], starts[1:]), strict=True):
        tone = base * (0.35 + 0.65 * (key % _SHADE_LEVELS + 0.5) / _SHADE_LEVELS)
        cv2.fillPoly(image, polygons, tone.tolist(), cv2.LINE_8, shift=4)
    return image


def render_body(
    camera: Camera,
    vertices: np.ndarray,
    faces: np.ndarray,
    frame_size: tuple[int, int],
    backdrop: np.ndarray | None = None,
) -> np.ndarray:
    """One frame of a mesh (world coordinates) seen by `camera`, shaded by face normals."""
    cam = camera.to_camera(vertices)
    tri = cam[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    view = tri.mean(axis=1)
    view /= np.linalg.norm(view, axis=1, keepdims=True) + 1e-12
    # Two-sided lighting: a face is as bright as it is turned towards the camera.
    shade = np.abs((normals * view).sum(axis=1))
    return render(frame_size, camera.project(vertices), faces, cam[:, 2], shade, backdrop)


def render_clip(
    body: SMPL,
    clip: MotionClip,
    camera: Camera,
    frame_size: tuple[int, int],
    seed: int = 0,
) -> tuple[list[np.ndarray], PosedBodies]:
    """Every frame of a clip over one static backdrop, with the posed bodies."""
    posed = clip.posed(body)
    backdrop = background(frame_size, seed)
    frames = [
        render_body(camera, vertices, body.faces, frame_size, backdrop)
        for vertices in posed.vertices
    ]
    return frames, posed


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float) -> int:
    """Write BGR frames as MJPG .avi or mp4v .mp4 (atomically); returns the frame count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = write_bgr_video(path, frames, fps)
    if count == 0:
        raise ValueError(f"{path}: no frames to write")
    return count


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of a BGR frame."""
    ok, buffer = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the frame as JPEG")
    return buffer.tobytes()


def write_jpeg(path: Path, frame: np.ndarray, quality: int = 90) -> Path:
    """Write one JPEG atomically."""
    encoded = encode_jpeg(frame, quality)
    return write_atomic(path, lambda temporary: temporary.write_bytes(encoded))


def write_jpegs(
    folder: Path, frames: Iterable[np.ndarray], pattern: str = "{:06d}.jpg", start: int = 0
) -> list[Path]:
    """Write frames as `folder/pattern.format(start + i)`; returns the paths."""
    return [
        write_jpeg(Path(folder) / pattern.format(start + index), frame)
        for index, frame in enumerate(frames)
    ]
