"""Sample InstaVariety TFRecords in the HMMR layout (datasets.md §7), one Example per track.

Written from the format description with the protobuf library's own serializer (the
`tf.train.Example` messages are declared here at run time; no TensorFlow), so the
hand-written wire reader in `pipeline.datasets.tfrecord` is checked against an
independent encoder. One JPEG of the first track ends in NUL bytes after its end marker,
which a reader that strips trailing zeros would damage.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from pipeline.sample import actor
from pipeline.sample.figure import encode_jpeg

CROP = 224
FILE_TEMPLATE = "insta_variety_{:02d}_copy00_hmr_noS5.ckpt-642561.tfrecord"
# HMMR "universal 25" order (datasets.md §1.10) and the actor joint (plus a pixel offset) it is drawn from.
INSTA_NAMES: tuple[str, ...] = (
    "R Heel", "R Knee", "R Hip", "L Hip", "L Knee", "L Heel", "R Wrist", "R Elbow",
    "R Shoulder", "L Shoulder", "L Elbow", "L Wrist", "Neck", "Head", "Nose", "L Eye",
    "R Eye", "L Ear", "R Ear", "L Big Toe", "R Big Toe", "L Small Toe", "R Small Toe",
    "L Ankle", "R Ankle",
)  # fmt: skip
_SOURCE = {
    "R Heel": ("right_foot", (0, 3)), "R Knee": ("right_knee", (0, 0)),
    "R Hip": ("right_hip", (0, 0)), "L Hip": ("left_hip", (0, 0)),
    "L Knee": ("left_knee", (0, 0)), "L Heel": ("left_foot", (0, 3)),
    "R Wrist": ("right_wrist", (0, 0)), "R Elbow": ("right_elbow", (0, 0)),
    "R Shoulder": ("right_shoulder", (0, 0)), "L Shoulder": ("left_shoulder", (0, 0)),
    "L Elbow": ("left_elbow", (0, 0)), "L Wrist": ("left_wrist", (0, 0)),
    "Neck": ("neck", (0, 0)), "Head": ("head_top", (0, 0)), "Nose": ("head", (0, 4)),
    "L Eye": ("head", (4, -3)), "R Eye": ("head", (-4, -3)),
    "L Ear": ("head", (8, -2)), "R Ear": ("head", (-8, -2)),
    "L Big Toe": ("left_toe", (-2, 0)), "R Big Toe": ("right_toe", (2, 0)),
    "L Small Toe": ("left_toe", (3, 0)), "R Small Toe": ("right_toe", (-3, 0)),
    "L Ankle": ("left_ankle", (0, 0)), "R Ankle": ("right_ankle", (0, 0)),
}  # fmt: skip
CLIP_FRAMES = 24
# (file index, has image/phis, tracks as (first clip frame, end clip frame, roll degrees)):
# every track is a take of one rendered clip, rolled so each looks and reads differently.
_FILES = ((0, True, ((0, 16, 0.0), (4, 24, 8.0))), (1, False, ((2, 18, -8.0), (6, 22, 14.0))))
PLANTED_HIDDEN = (3, "L Wrist")
"""(frame, joint) made invisible in every track: coordinates stored as 0."""


def _example_class() -> Any:
    """Declare tensorflow/core/example/{feature,example}.proto messages at run time."""
    fd = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="tcmr_sample/example.proto", package="tcmr_sample", syntax="proto3"
    )
    for name, kind in (
        ("BytesList", fd.TYPE_BYTES),
        ("FloatList", fd.TYPE_FLOAT),
        ("Int64List", fd.TYPE_INT64),
    ):
        message = proto.message_type.add(name=name)
        message.field.add(name="value", number=1, type=kind, label=fd.LABEL_REPEATED)
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (field, kind) in enumerate(
        (("bytes_list", "BytesList"), ("float_list", "FloatList"), ("int64_list", "Int64List")),
        start=1,
    ):
        feature.field.add(
            name=field, number=number, type=fd.TYPE_MESSAGE, label=fd.LABEL_OPTIONAL,
            type_name=f".tcmr_sample.{kind}", oneof_index=0,
        )  # fmt: skip
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=fd.TYPE_STRING, label=fd.LABEL_OPTIONAL)
    entry.field.add(
        name="value", number=2, type=fd.TYPE_MESSAGE, label=fd.LABEL_OPTIONAL,
        type_name=".tcmr_sample.Feature",
    )  # fmt: skip
    features.field.add(
        name="feature", number=1, type=fd.TYPE_MESSAGE, label=fd.LABEL_REPEATED,
        type_name=".tcmr_sample.Features.FeatureEntry",
    )  # fmt: skip
    example = proto.message_type.add(name="Example")
    example.field.add(
        name="features", number=1, type=fd.TYPE_MESSAGE, label=fd.LABEL_OPTIONAL,
        type_name=".tcmr_sample.Features",
    )  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tcmr_sample.Example"))


def _frame(record: bytes) -> bytes:
    """TFRecord framing: length, masked CRC of the length, data, masked CRC of the data."""

    def masked(data: bytes) -> int:
        crc = google_crc32c.value(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", masked(length)) + record + struct.pack("<I", masked(record))


def _track(seed: int, start: int, stop: int, angle: float) -> tuple[np.ndarray, list[bytes]]:
    """Keypoints (N, 25, 3) in crop pixels (x, y, vis) and the JPEG crops of one track."""
    frames = stop - start
    joints = actor.walking_actor(CLIP_FRAMES, seed).joints[start:stop] @ actor.roll(angle).T
    pixels = actor.project(joints, actor.intrinsics(CROP, CROP))
    (drawn,) = actor.render_views(CLIP_FRAMES, seed, CROP, (angle,), start, stop)
    keypoints = np.zeros((frames, len(INSTA_NAMES), 3))
    for k, name in enumerate(INSTA_NAMES):
        source, offset = _SOURCE[name]
        keypoints[:, k, :2] = pixels[:, actor.INDEX[source]] + offset
        keypoints[:, k, 2] = 1.0
    keypoints[:, INSTA_NAMES.index("Head")] = 0.0  # OpenPose has no head top (HMMR)
    hidden_frame, hidden_joint = PLANTED_HIDDEN
    keypoints[hidden_frame, INSTA_NAMES.index(hidden_joint)] = 0.0
    jpegs = [encode_jpeg(image) for image in drawn]
    return keypoints, jpegs


def _example(example_class: Any, keypoints: np.ndarray, jpegs: list[bytes], phis: bool) -> bytes:
    frames = len(jpegs)
    stored = keypoints.copy()
    if phis:  # normalised to [-1, 1] over the crop, invisible points kept at 0
        stored[..., :2] = np.where(stored[..., 2:3] > 0, 2.0 * stored[..., :2] / CROP - 1.0, 0.0)
    lsp = stored[:, :14]
    xys = np.stack([lsp[..., 0], lsp[..., 1]], axis=1)  # (N, 2, 14)
    face = stored[:, 14:19].transpose(0, 2, 1)  # (N, 3, 5)
    toes = stored[:, 19:25].transpose(0, 2, 1)  # (N, 3, 6)
    values: dict[str, tuple[str, Any]] = {
        "meta/N": ("int64", [frames]),
        "meta/has_3d": ("int64", [0]),
        "meta/has_3d_joints": ("int64", [0]),
        "image/filenames": ("bytes", [f"frames/{t:06d}.jpg".encode() for t in range(frames)]),
        "image/heightwidths": ("int64", [CROP, CROP] * frames),
        "image/encoded": ("bytes", jpegs),
        "image/xys": ("float", xys.ravel()),
        "image/visibilities": ("int64", lsp[..., 2].astype(np.int64).ravel()),
        "image/face_pts": ("float", face.ravel()),
        "image/toe_pts": ("float", toes.ravel()),
        "image/centers": ("int64", [CROP // 2, CROP // 2] * frames),
        "image/scale_factors": ("float", [1.0, 1.0] * frames),
        "image/crop_pts": ("int64", [0, 0] * frames),
        "image/cams": ("float", np.zeros(3 * frames)),
        "mosh/gt3ds": ("float", np.zeros(42 * frames)),
        "mosh/poses": ("float", -np.ones(72 * frames)),
        "mosh/shape": ("float", -np.ones(10)),
    }
    if phis:
        values["image/phis"] = ("float", np.linspace(-1, 1, 2048 * frames))
    example = example_class()
    for key, (kind, data) in values.items():
        target = getattr(example.features.feature[key], f"{kind}_list").value
        target.extend([float(v) for v in data] if kind == "float" else list(data))
    return example.SerializeToString()


def write_insta(root: Path, seed: int = 0) -> dict[str, Any]:
    """Write `root/insta_variety/train/*.tfrecord`; return the planted truth per track.

    Truth: `dir` (the dataset folder) and `tracks`, each with `file`, `index`, `phis`,
    `keypoints` (N, 25, 3) in crop pixels with visibility, and the exact `jpegs`.
    """
    folder = Path(root) / "insta_variety" / "train"
    folder.mkdir(parents=True, exist_ok=True)
    example_class = _example_class()
    tracks: list[dict[str, Any]] = []
    for file_index, phis, takes in _FILES:
        path = folder / FILE_TEMPLATE.format(file_index)
        blobs = []
        for index, (start, stop, angle) in enumerate(takes):
            keypoints, jpegs = _track(seed, start, stop, angle)
            if not tracks:
                jpegs[0] = jpegs[0] + b"\x00\x00\x00"  # decoders ignore bytes after FF D9
            blobs.append(_frame(_example(example_class, keypoints, jpegs, phis)))
            tracks.append(
                {"file": path, "index": index, "phis": phis, "keypoints": keypoints,
                 "jpegs": jpegs}
            )  # fmt: skip
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(b"".join(blobs))
        os.replace(partial, path)
    return {"dir": folder.parent, "tracks": tracks}
