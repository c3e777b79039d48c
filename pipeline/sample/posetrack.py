"""A small PoseTrack in its release layouts (datasets.md §9): 2018 COCO-style JSON and 2017 annolist.

2018: `posetrack/posetrack_data/annotations/train/<vid>_<src>_train.json` and
`posetrack/images/train/<vid>_<src>_train/%06d.jpg`; each video has 20 frames of which 12
are labelled, one long track (person 0) and one short track (person 1, 5 labelled frames,
below the 8-frame minimum), ears unannotated, one all-zero annotation, one zero-width box.
The second video lists the keypoint names in a shuffled order (readers must reorder by name).
2017: `posetrack2017/annotations/train/<vid>.json` with `annolist` entries whose scalars are
wrapped in one-element lists, images under `posetrack2017/images/bonn_5sec/<vid>/%08d.jpg`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from model.smpl import SMPL
from pipeline.sample.figure import (
    Camera,
    MotionClip,
    background,
    render_body,
    synthetic_body,
    write_jpeg,
)
from storage.files import write_atomic
from storage.layout import SPIN_JOINT_NAMES

FRAME_SIZE = (240, 320)
FRAMES = 20
LABELLED = range(4, 16)  # 12 consecutive labelled frames
SHORT_TRACK = range(6, 11)  # person 1 annotated on 5 frames only
ALL_ZERO = 9  # frame whose person-0 annotation has all-zero keypoints
ZERO_WIDTH = 14  # frame whose person-0 box has w == 0
MISSING_JOINT = (5, "left_wrist")  # (frame, joint) left unannotated (0, 0, 0)
# PoseTrack 2018 names -> SPIN-49 row they are planted from (ears are placeholders).
NAMES_2018: dict[str, int | None] = {
    "nose": SPIN_JOINT_NAMES.index("OP Nose"), "head_bottom": 37, "head_top": 38,
    "left_ear": None, "right_ear": None, "left_shoulder": 34, "right_shoulder": 33,
    "left_elbow": 35, "right_elbow": 32, "left_wrist": 36, "right_wrist": 31, "left_hip": 28,
    "right_hip": 27, "left_knee": 29, "right_knee": 26, "left_ankle": 30, "right_ankle": 25,
}  # fmt: skip
# PoseTrack 2017 point ids 0..14 -> SPIN-49 row.
IDS_2017: tuple[int, ...] = (25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 0, 38)
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
            [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]  # fmt: skip
VIDEOS = (("000001", "bonn"), ("000002", "mpii"))


def _write_json(path: Path, data: Any) -> None:
    write_atomic(path, lambda temporary: temporary.write_text(json.dumps(data)))


def _people(body: SMPL, camera: Camera, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per person: posed vertices [F, V, 3] and projected 49 joints [F, 49, 2]."""
    vertices, joints = [], []
    for person in range(2):
        clip = MotionClip.walking(FRAMES, seed=seed + person, depth=5.0)
        clip.transl[:, 0] += 0.9 * (person - 0.5)
        posed = clip.posed(body)
        vertices.append(posed.vertices)
        joints.append(camera.project(posed.joints49))
    return vertices, joints


def _render(folder: Path, camera: Camera, vertices: list[np.ndarray], faces: np.ndarray,
            pattern: str, seed: int) -> list[str]:  # fmt: skip
    backdrop = background(FRAME_SIZE, seed)
    all_faces = np.concatenate([faces, faces + vertices[0].shape[1]])
    names = []
    for frame in range(FRAMES):
        both = np.concatenate([vertices[0][frame], vertices[1][frame]])
        path = folder / pattern.format(frame)
        write_jpeg(path, render_body(camera, both, all_faces, FRAME_SIZE, backdrop))
        names.append(path.name)
    return names


def write_posetrack(root: Path, seed: int = 0, body: SMPL | None = None) -> dict[str, Any]:
    """Write `root/posetrack` (2018) and `root/posetrack2017`; returns the planted keypoints.

    Truth: {"2018": {video: {person: {frame: (17, 3) canonical-order keypoints}}},
    "2017": {video: {person: {frame: (15, 3)}}}}.
    """
    body = body or synthetic_body(seed)
    height, width = FRAME_SIZE
    camera = Camera.simple(width, height, focal=300.0)
    truth: dict[str, Any] = {"2018": {}, "2017": {}}
    base = Path(root) / "posetrack"
    names = list(NAMES_2018)
    for number, (vid, source) in enumerate(VIDEOS):
        video = f"{vid}_{source}_train"
        vertices, joints = _people(body, camera, seed * 100 + 60 + 2 * number)
        _render(base / "images" / "train" / video, camera, vertices, body.faces, "{:06d}.jpg",
                seed + number)  # fmt: skip
        order = names if number == 0 else names[::-1]  # second video: shuffled name order
        images, annotations = [], []
        truth["2018"][video] = {0: {}, 1: {}}
        for frame in range(FRAMES):
            image_id = int(f"1{vid}{frame:04d}")
            images.append({
                "is_labeled": frame in LABELLED, "nframes": FRAMES, "frame_id": image_id,
                "id": image_id, "vid_id": vid,
                "file_name": f"images/train/{video}/{frame:06d}.jpg",
                "has_no_densepose": True, "ignore_regions_x": [], "ignore_regions_y": [],
            })  # fmt: skip
            if frame not in LABELLED:
                continue
            for person in (0, 1):
                if person == 1 and frame not in SHORT_TRACK:
                    continue
                canonical = np.zeros((17, 3))
                for index, name in enumerate(names):
                    row = NAMES_2018[name]
                    if row is not None:
                        canonical[index] = (*joints[person][frame, row], 1.0)
                if frame == MISSING_JOINT[0]:
                    canonical[names.index(MISSING_JOINT[1])] = 0.0
                if person == 0 and frame == ALL_ZERO:
                    canonical[:] = 0.0
                shown = canonical[canonical[:, 2] > 0, :2]
                low = shown.min(axis=0) - 10 if len(shown) else np.zeros(2)
                size = shown.max(axis=0) + 10 - low if len(shown) else np.zeros(2)
                if person == 0 and frame == ZERO_WIDTH:
                    size[0] = 0.0
                stored = canonical[[names.index(name) for name in order]]
                annotations.append({
                    "bbox": [*low.tolist(), *size.tolist()], "bbox_head": [0, 0, 0, 0],
                    "category_id": 1, "image_id": image_id,
                    "id": int(f"1{vid}{frame:04d}{person:02d}"),
                    "keypoints": stored.ravel().tolist(), "track_id": person, "scores": [],
                })  # fmt: skip
                truth["2018"][video][person][frame] = {
                    "keypoints": canonical,
                    "bbox": [*low, *size],
                }
        categories = [{"supercategory": "person", "id": 1, "name": "person",
                       "keypoints": order, "skeleton": SKELETON}]  # fmt: skip
        _write_json(
            base / "posetrack_data" / "annotations" / "train" / f"{video}.json",
            {"images": images, "annotations": annotations, "categories": categories},
        )
    truth["2017"] = _write_2017(Path(root) / "posetrack2017", body, camera, seed)
    return truth


def _write_2017(base: Path, body: SMPL, camera: Camera, seed: int) -> dict[str, Any]:
    vid = "000342_mpii"
    vertices, joints = _people(body, camera, seed * 100 + 80)
    _render(base / "images" / "bonn_5sec" / vid, camera, vertices, body.faces, "{:08d}.jpg", seed)
    annolist, truth = [], {0: {}, 1: {}}
    for frame in range(FRAMES):
        entry: dict[str, Any] = {
            "image": [{"name": f"images/bonn_5sec/{vid}/{frame:08d}.jpg"}],
            "imgnum": [frame + 1],
            "is_labeled": [int(frame in LABELLED)],
            "annorect": [],
        }
        for person in (0, 1) if frame in LABELLED else ():
            if person == 1 and frame not in SHORT_TRACK:
                continue
            points = joints[person][frame, list(IDS_2017)]
            head = points[14]
            entry["annorect"].append({
                "x1": [float(head[0] - 8)], "y1": [float(head[1] - 8)],
                "x2": [float(head[0] + 8)], "y2": [float(head[1] + 8)],
                "score": [1.0], "track_id": [person],
                "annopoints": [{"point": [
                    {"id": [i], "x": [float(p[0])], "y": [float(p[1])], "score": [1.0],
                     "is_visible": [1]}
                    for i, p in enumerate(points)
                ]}],
            })  # fmt: skip
            truth[person][frame] = points
        annolist.append(entry)
    _write_json(base / "annotations" / "train" / f"{vid}.json", {"annolist": annolist})
    return {vid: truth}
