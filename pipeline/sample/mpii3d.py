"""Sample MPI-INF-3DHP files in the official layout (datasets.md §4-§5).

Train: `S1/Seq1` with `imageSequence/video_{k}.avi` (MJPG) for the 8 vnect cameras and
one 2D joint planted outside the image; `S2/Seq1` with pre-extracted `video_{k}/%06d.jpg`
frames and three more annotation rows than frames (the release's known quirk). Test:
`mpi_inf_3dhp_test_set/TS1/annot_data.mat` as a real MATLAB 7.3 file (HDF5 with the
512-byte MATLAB header, MATLAB's reversed dimensions) and 1-based `img_%06d.jpg` frames.
Frames are small (FRAME x FRAME px instead of 2048x2048) and the calibration says so.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io

from pipeline.sample import actor
from pipeline.sample.figure import write_jpeg, write_video

FRAME = 160
VNECT = (0, 1, 2, 4, 5, 6, 7, 8)
CAMERAS = 14
# The 17 test joints as 0-based indices into the 28 (MATLAB `[8 6 15 16 17 10 11 12 24 25
# 26 19 20 21 5 4 7]` minus one): head_top, neck, right arm, left arm, right leg, left leg,
# pelvis, spine, head.
TEST_JOINTS = (7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25, 18, 19, 20, 4, 3, 6)
OUTSIDE = {"sequence": "S1/Seq1", "camera": 0, "frame": 16, "joint": "left_wrist"}
"""Planted: this 2D joint lies left of the image (x < 0) in this one frame."""
TEST_OUTSIDE_FRAME = 10
CLIP_FRAMES = 34
"""All sequences are takes of one rendered clip (actor.render_views caches it)."""
# (subject, sequence, first and end clip frame, media, surplus annotation rows, roll offset)
_TRAIN = (("S1", "Seq1", 0, 34, "video", 0, 0.0), ("S2", "Seq1", 10, 26, "frames", 3, 1.0))
TEST_START = 4


def _roll(index: int, offset: float) -> float:
    return -13.0 + 2.0 * index + offset


def _camera(index: int, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """(R, t mm) of camera `index`: views rolled about the optical axis (see actor)."""
    return actor.roll(_roll(index, offset)), np.zeros(3)


def _calibration_text(intrinsic: np.ndarray, offset: float) -> str:
    """14 camera blocks, labels in the first 11 characters, one trailing space per line."""
    lines = ["Skeletool Camera Calibration File V1.0"]
    k4 = np.eye(4)
    k4[:3, :3] = intrinsic
    for index in range(CAMERAS):
        rotation, translation = _camera(index, offset)
        rt = np.eye(4)
        rt[:3, :3], rt[:3, 3] = rotation, translation
        lines += [
            f"name          {index}",
            "  sensor      10 10",
            f"  size        {FRAME} {FRAME}",
            "  animated    0",
            "  intrinsic   " + " ".join(f"{v:.6f}" for v in k4.ravel()) + " ",
            "  extrinsic   " + " ".join(f"{v:.6f}" for v in rt.ravel()) + " ",
            "  radial      0",
        ]
    return "\n".join(lines) + "\n"


def _savemat(path: Path, content: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.partial")
    with open(temp, "wb") as handle:
        scipy.io.savemat(handle, content, format="5", oned_as="column")
    os.replace(temp, path)


def _write_train(root: Path, seed: int) -> dict[str, Any]:
    intrinsic = actor.intrinsics(FRAME, FRAME)
    truth: dict[str, Any] = {}
    for subject, seq, start, stop, media, extra_rows, offset in _TRAIN:
        folder = root / subject / seq
        folder.mkdir(parents=True, exist_ok=True)
        frames = stop - start
        world = actor.walking_actor(CLIP_FRAMES, seed).joints[start:stop] * 1000.0
        annot2 = np.empty((CAMERAS, 1), dtype=object)
        annot3 = np.empty((CAMERAS, 1), dtype=object)
        cam_points: dict[int, np.ndarray] = {}
        pixels: dict[int, np.ndarray] = {}
        for camera in range(CAMERAS):
            rotation, translation = _camera(camera, offset)
            points = world @ rotation.T + translation
            uv = actor.project(points, intrinsic)
            if f"{subject}/{seq}" == OUTSIDE["sequence"] and camera == OUTSIDE["camera"]:
                uv[OUTSIDE["frame"], actor.INDEX[OUTSIDE["joint"]], 0] = -5.0
            rows3 = np.concatenate([points, points[-1:].repeat(extra_rows, 0)])
            rows2 = np.concatenate([uv, uv[-1:].repeat(extra_rows, 0)])
            annot3[camera, 0] = rows3.reshape(len(rows3), 84)
            annot2[camera, 0] = rows2.reshape(len(rows2), 56)
            cam_points[camera], pixels[camera] = points, uv
        rolls = tuple(_roll(camera, offset) for camera in VNECT)
        views = actor.render_views(CLIP_FRAMES, seed, FRAME, rolls, start, stop)
        for camera, drawn in zip(VNECT, views, strict=True):
            if media == "video":
                write_video(folder / "imageSequence" / f"video_{camera}.avi", drawn, fps=25.0)
            else:
                for t, image in enumerate(drawn):
                    write_jpeg(folder / f"video_{camera}" / f"{t + 1:06d}.jpg", image)
        total = frames + extra_rows
        _savemat(folder / "annot.mat", {
            "annot2": annot2, "annot3": annot3, "univ_annot3": annot3,
            "cameras": np.arange(CAMERAS, dtype=np.float64)[None],
            "frames": np.arange(total, dtype=np.float64)[:, None],
        })  # fmt: skip
        (folder / "camera.calibration").write_text(_calibration_text(intrinsic, offset))
        truth[f"{subject}/{seq}"] = {
            "frames": frames, "annotation_rows": total, "joints3d_mm": cam_points,
            "joints2d": pixels, "media": media,
        }  # fmt: skip
    return truth


def _matlab_header() -> bytes:
    """The 512-byte user block MATLAB writes in front of a v7.3 (HDF5) MAT-file."""
    text = (
        "MATLAB 7.3 MAT-file, Platform: GLNXA64, "
        f"Created on: {time.strftime('%a %b %d %H:%M:%S %Y', time.gmtime(0))} "
        "HDF5 schema 1.00 ."
    ).encode()
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    return header.ljust(512, b"\x00")


def _write_v73(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """HDF5 datasets in MATLAB's column-major view (h5py shape = reversed MATLAB dims)."""
    temp = path.with_name(f".{path.name}.partial")
    with h5py.File(temp, "w", userblock_size=512) as handle:
        for name, array in arrays.items():
            dataset = handle.create_dataset(name, data=array.astype(np.float64))
            dataset.attrs["MATLAB_class"] = np.bytes_("double")
    with open(temp, "r+b") as handle:
        handle.write(_matlab_header())
    os.replace(temp, path)


def _write_test(root: Path, seed: int) -> dict[str, Any]:
    frames = CLIP_FRAMES - TEST_START
    folder = root / "mpi_inf_3dhp_test_set" / "TS1"
    (folder / "imageSequence").mkdir(parents=True, exist_ok=True)
    intrinsic = actor.intrinsics(FRAME, FRAME)
    points = actor.walking_actor(CLIP_FRAMES, seed).joints[TEST_START:] * 1000.0
    uv = actor.project(points, intrinsic)
    (drawn,) = actor.render_views(CLIP_FRAMES, seed, FRAME, (0.0,), TEST_START)
    for t, image in enumerate(drawn):
        write_jpeg(folder / "imageSequence" / f"img_{t + 1:06d}.jpg", image)
    uv_test = uv[:, TEST_JOINTS].copy()
    uv_test[TEST_OUTSIDE_FRAME, 0, 1] = FRAME + 3.0  # head_top below the image
    valid = (np.arange(frames) % 4 != 1).astype(np.float64)
    _write_v73(folder / "annot_data.mat", {
        "annot2": uv_test[:, None], "annot3": points[:, None, TEST_JOINTS],
        "univ_annot3": points[:, None, TEST_JOINTS], "valid_frame": valid[:, None],
        "activity_annotation": np.ones((frames, 1)), "bb_crop": np.zeros((frames, 34)),
    })  # fmt: skip
    return {"TS1": {"frames": frames, "joints3d_mm": points[:, TEST_JOINTS], "joints2d": uv_test,
                    "valid": valid.astype(bool)}}  # fmt: skip


def write_mpii3d(root: Path, seed: int = 0) -> dict[str, Any]:
    """Write `root/mpi_inf_3dhp/` (train S1, S2 and test TS1); return the planted truth.

    Truth: `dir`, and per sequence the frame count, camera-frame 3D joints in mm and 2D
    pixels in the dataset's own joint order (28 for train per camera, 17 for test).
    """
    folder = Path(root) / "mpi_inf_3dhp"
    return {"dir": folder, "train": _write_train(folder, seed), "test": _write_test(folder, seed)}
