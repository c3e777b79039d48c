"""InstaVariety through the staged build: frames are re-read from the TFRecords, never copied."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from tfrecord_files import jpeg, write_tracks

from pipeline.build import BuildRequest, build_dataset, extract_shard, load_staged, plan_build
from pipeline.crop import FrameSources
from pipeline.datasets.insta import read_insta
from pipeline.datasets.tfrecord import SourceChangedError
from pipeline.features import extract_to_store
from storage.backend import location
from storage.reader import open_store
from storage.writer import read_pointer

GROUP = "insta/train/clean"
FILE = "insta_variety_00_copy00_hmr_noS5.ckpt-642561.tfrecord"


def _dataset(root: Path, seed: int) -> list[bytes]:
    """Two tracks (2 and 1 frames) in one TFRecord under `root/train`; their JPEGs."""
    rng = np.random.default_rng(seed)
    images = [jpeg(rng) for _ in range(3)]
    write_tracks(root / "train" / FILE, [images[:2], images[2:]], seed=seed)
    return images


def _request(tmp_path: Path, checkpoint: Path, seed: int, store: str) -> BuildRequest:
    """A build of `insta/train` from a fresh `_dataset(seed)` into `tmp_path/store`."""
    root = tmp_path / "insta_variety"
    _dataset(root, seed)
    return BuildRequest("insta", "train", root, str(tmp_path / store), checkpoint)


def _features(store: Path) -> np.ndarray:
    group = open_store(str(store), GROUP)
    return group.read("features", 0, len(group))


def test_staged_build_equals_in_memory_extraction_bit_for_bit(
    tmp_path: Path, checkpoint: Path
) -> None:
    request = _request(tmp_path, checkpoint, seed=3, store="staged")

    result = build_dataset(request, shard_frames=2)  # two shards, each re-reading the file
    extract_to_store(
        read_insta(request.root, "train"),
        str(tmp_path / "direct"),
        GROUP,
        checkpoint,
        progress=False,
    )

    assert (result.status, result.extracted, result.frames) == ("built", 2, 3)
    staged, direct = _features(tmp_path / "staged"), _features(tmp_path / "direct")
    assert staged.dtype == np.float16 and staged.shape == (3, 2048)
    np.testing.assert_array_equal(staged, direct)
    assert len({row.tobytes() for row in staged}) == 3  # each frame its own pixels
    assert [s.content_hash for s in open_store(str(tmp_path / "staged"), GROUP).sequences] == [
        s.content_hash for s in open_store(str(tmp_path / "direct"), GROUP).sequences
    ]


def test_a_tfrecord_changed_after_staging_fails_its_shard_naming_the_file(
    tmp_path: Path, checkpoint: Path
) -> None:
    request = _request(tmp_path, checkpoint, seed=4, store="store")
    plan = plan_build(request)
    path = request.root / "train" / FILE
    images = _dataset(request.root, seed=5)  # same names and frame counts, other JPEGs
    os.utime(path, ns=(1, 1))  # the source digest reads sizes and mtimes

    with pytest.raises(SourceChangedError, match=rf"{re.escape(FILE)}: record at byte 0 changed"):
        extract_shard(request, plan.shards[0])
    assert read_pointer(location(request.store), GROUP) is None

    replan = plan_build(request)  # a rerun sees the change and stages the new frames
    assert replan.staging != plan.staging
    staged = [load_staged(Path(f).read_bytes(), f) for s in replan.shards for f in s.files]
    with FrameSources() as sources:
        reread = [sources.encoded(ref.path, ref.record) for r in staged for ref in r.images]
    assert reread == images
