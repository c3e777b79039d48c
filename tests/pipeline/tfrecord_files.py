"""Small InstaVariety-layout TFRecord files for tests, framed and encoded from the spec.

The framing uses the `crc32c` package and the messages `tfrecord`'s own `example_pb2`, so
nothing here shares code with the reader under test.
"""

from __future__ import annotations

import struct
from pathlib import Path

import crc32c
import cv2
import numpy as np
from tfrecord import example_pb2


def masked(data: bytes) -> int:
    """TFRecord's masked CRC-32C (datasets.md §7)."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(payload: bytes) -> bytes:
    """One record: uint64 length, masked CRC of the length, payload, masked CRC of the payload."""
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked(length)) + payload + struct.pack("<I", masked(payload))


def jpeg(rng: np.random.Generator) -> bytes:
    """A 224x224 JPEG of smooth random colour blocks."""
    blocks = rng.integers(0, 256, (7, 7, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", cv2.resize(blocks, (224, 224)))
    assert ok
    return data.tobytes()


def track_example(images: list[bytes], rng: np.random.Generator) -> bytes:
    """A serialized HMMR `tf.train.Example` of one track (keypoints in crop pixels, no phis)."""
    frames = len(images)
    example = example_pb2.Example()
    feature = example.features.feature
    feature["meta/N"].int64_list.value.append(frames)
    feature["image/encoded"].bytes_list.value.extend(images)
    feature["image/heightwidths"].int64_list.value.extend([224, 224] * frames)
    feature["image/xys"].float_list.value.extend(rng.uniform(0, 224, 2 * 14 * frames).tolist())
    feature["image/visibilities"].int64_list.value.extend([1] * 14 * frames)
    face = np.concatenate([rng.uniform(0, 224, (frames, 2, 5)), np.ones((frames, 1, 5))], 1)
    toes = np.concatenate([rng.uniform(0, 224, (frames, 2, 6)), np.ones((frames, 1, 6))], 1)
    feature["image/face_pts"].float_list.value.extend(face.ravel().tolist())
    feature["image/toe_pts"].float_list.value.extend(toes.ravel().tolist())
    return example.SerializeToString()


def write_tracks(path: Path, tracks: list[list[bytes]], seed: int = 0) -> list[int]:
    """Write one record per track of JPEG bytes to `path`; return each record's byte offset."""
    rng = np.random.default_rng(seed)
    blobs = [frame_record(track_example(images, rng)) for images in tracks]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(blobs))
    return [sum(len(b) for b in blobs[:i]) for i in range(len(blobs))]
