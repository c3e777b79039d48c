"""Staged sequence files: what `plan_build` writes is exactly what a shard task reads back."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.build import BuildRequest, group_shards, load_staged, plan_build, stage_record
from pipeline.crop import FrameSources
from pipeline.datasets.records import ImageRef, RecordValue, SequenceRecord
from pipeline.sample.insta import write_insta
from storage.errors import FormatError


def _record(images: list[ImageRef]) -> SequenceRecord:
    t = len(images)
    rng = np.random.default_rng(0)
    return SequenceRecord(
        dataset="insta",
        split="train",
        name="clip_7",
        person_id=3,
        fps=29.97,
        images=images,
        frame_index=np.arange(t, dtype=np.int64) + 5,
        joints2d=rng.random((t, 49, 3), dtype=np.float32),
        joints3d=rng.random((t, 49, 4), dtype=np.float32),
        pose=rng.random((t, 72), dtype=np.float32),
        shape=rng.random((t, 10), dtype=np.float32),
        has_smpl=np.array([True, False, True][:t]),
        bbox=rng.random((t, 4), dtype=np.float32),
        valid=np.array([True, True, False][:t]),
        content_hash="abc123",
        crop_scale=1.1,
        already_cropped=True,
    )


def test_a_staged_record_reads_back_field_for_field() -> None:
    images = [
        ImageRef(
            "shard-00.tfrecord", record=RecordValue(1 << 33, 70_000, 0xFFFFFFFE, "image/enc", 2)
        ),
        ImageRef("video.mp4", frame=0),
        ImageRef("frames/000003.jpg"),
    ]
    record = _record(images)

    blob = stage_record(record)
    back = load_staged(blob, "staged/000000.npz")

    assert zipfile.is_zipfile(io.BytesIO(blob))
    assert back.images == images
    assert [ref.kind for ref in back.images] == ["record", "video", "image"]
    assert (back.dataset, back.split, back.name, back.person_id) == ("insta", "train", "clip_7", 3)
    assert back.fps == pytest.approx(29.97) and back.crop_scale == pytest.approx(1.1)
    assert back.content_hash == "abc123" and back.already_cropped is True
    for name in ("frame_index", "joints2d", "joints3d", "pose", "shape", "has_smpl", "bbox"):
        np.testing.assert_array_equal(getattr(back, name), getattr(record, name))
        assert getattr(back, name).dtype == getattr(record, name).dtype
    np.testing.assert_array_equal(back.valid, record.valid)
    back.check()


def test_a_damaged_staged_file_names_itself() -> None:
    with pytest.raises(FormatError, match=r"staged/000001\.npz"):
        load_staged(b"not an npz", "staged/000001.npz")


def test_shards_follow_the_frame_budget_and_keep_long_sequences_whole() -> None:
    staged = [("a", 10), ("b", 5), ("c", 30), ("d", 4), ("e", 4)]

    shards = group_shards(staged, 16)

    assert [s.files for s in shards] == [("a", "b"), ("c",), ("d", "e")]
    assert [s.frames for s in shards] == [15, 30, 8]
    assert [s.index for s in shards] == [0, 1, 2]


def test_staged_instavariety_holds_references_not_jpeg_bytes(tmp_path: Path) -> None:
    truth = write_insta(tmp_path / "data", seed=2)
    checkpoint = tmp_path / "checkpoint.pth.tar"  # planning only hashes it
    checkpoint.write_bytes(b"weights")
    request = BuildRequest("insta", "train", truth["dir"], str(tmp_path / "store"), checkpoint)

    plan = plan_build(request)

    files = [path for shard in plan.shards for path in shard.files]
    assert len(files) == len(truth["tracks"]) == 4
    for path, track in zip(files, truth["tracks"], strict=True):
        blob = Path(path).read_bytes()
        jpeg_bytes = sum(len(j) for j in track["jpegs"])
        assert len(blob) < 0.5 * jpeg_bytes
        assert all(j not in blob for j in track["jpegs"])
        with np.load(io.BytesIO(blob)) as npz:
            assert not any(npz[name].dtype == np.uint8 for name in npz.files)
        record = load_staged(blob, path)
        assert {ref.kind for ref in record.images} == {"record"}
        with FrameSources() as sources:
            assert [sources.encoded(ref.path, ref.record) for ref in record.images] == track[
                "jpegs"
            ]
