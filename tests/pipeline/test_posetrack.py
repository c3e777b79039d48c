"""PoseTrack 2018 and 2017 readers against the sample written from the format description."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.datasets.posetrack import read_posetrack, read_posetrack2017
from pipeline.datasets.records import Quarantine
from pipeline.sample.posetrack import ALL_ZERO, LABELLED, MISSING_JOINT, ZERO_WIDTH
from storage.errors import FormatError


@pytest.mark.usefixtures("sample_truth")  # writes the sample files
def test_2018_tracks_frames_and_filters(sample_dir: Path) -> None:
    quarantine = Quarantine()
    records = list(read_posetrack(sample_dir / "posetrack", "train", quarantine))
    assert [(r.name, r.person_id) for r in records] == [
        ("000001_bonn_train", 0), ("000002_mpii_train", 0)
    ]  # fmt: skip
    expected = [f for f in LABELLED if f not in (ALL_ZERO, ZERO_WIDTH)]
    for record in records:
        assert record.frame_index.tolist() == expected
        assert record.joints2d.shape == (10, 49, 3) and record.bbox.dtype == np.float32
        assert record.images[0].path.endswith(f"images/train/{record.name}/000004.jpg")
    short = [skip for skip in quarantine.skips if skip.key.endswith("person1")]
    assert len(short) == 2 and "5 usable frames < min_frames 8" in short[0].reason


def test_2018_keypoints_by_name_and_bbox(sample_dir: Path, sample_truth: dict[str, Any]) -> None:
    records = list(read_posetrack(sample_dir / "posetrack"))
    for record in records:  # the second video stores the names in reverse order
        truth = sample_truth["posetrack"]["2018"][record.name][0]
        for row, frame in enumerate(record.frame_index):
            planted = truth[int(frame)]["keypoints"]
            np.testing.assert_allclose(record.joints2d[row, 25, :2], planted[16, :2], atol=1e-3)
            np.testing.assert_allclose(record.joints2d[row, 37, :2], planted[1, :2], atol=1e-3)
            np.testing.assert_allclose(record.joints2d[row, 44, :2], planted[0, :2], atol=1e-3)
            x, y, w, h = truth[int(frame)]["bbox"]
            np.testing.assert_allclose(record.bbox[row], [x + w / 2, y + h / 2, 0.8 * max(w, h),
                                                          0.8 * max(w, h)], rtol=1e-5)  # fmt: skip
        assert not record.joints2d[:, [47, 48], 2].any()  # ears are placeholders
    frame, _ = MISSING_JOINT  # left wrist unannotated: masked in spin 36
    row = records[0].frame_index.tolist().index(frame)
    assert records[0].joints2d[row, 36, 2] == 0 and records[0].joints2d[row + 1, 36, 2] == 1


def test_2017_annolist(sample_dir: Path, sample_truth: dict[str, Any]) -> None:
    quarantine = Quarantine()
    (record,) = read_posetrack2017(sample_dir / "posetrack2017", "train", quarantine)
    truth = sample_truth["posetrack"]["2017"]["000342_mpii"][0]
    assert record.frame_index.tolist() == list(LABELLED)
    # id 0 right ankle -> spin 25, id 14 head top -> spin 38
    np.testing.assert_allclose(record.joints2d[0, 25, :2], truth[4][0], atol=1e-3)
    np.testing.assert_allclose(record.joints2d[-1, 38, :2], truth[15][14], atol=1e-3)
    assert record.images[0].path.endswith("images/bonn_5sec/000342_mpii/00000004.jpg")
    assert len(quarantine) == 1 and quarantine.skips[0].key.endswith("person1")


def test_bad_inputs(sample_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "posetrack"
    shutil.copytree(sample_dir / "posetrack", root)
    folder = root / "posetrack_data" / "annotations" / "train"
    first = folder / "000001_bonn_train.json"
    data = json.loads(first.read_text())
    data["categories"][0]["keypoints"][3] = "left_eye"
    first.write_text(json.dumps(data))
    (folder / "000002_mpii_train.json").write_text('{"images": [')
    quarantine = Quarantine()
    assert list(read_posetrack(root, "train", quarantine)) == []
    assert [skip.field for skip in quarantine.skips] == ["json", "json"]
    assert "categories[0].keypoints" in quarantine.skips[0].reason
    with pytest.raises(FormatError, match=r"000001_bonn_train\.json: field categories"):
        list(read_posetrack(root))
    data["categories"][0]["keypoints"][3] = "left_ear"
    data["annotations"][0]["keypoints"][0] = float("nan")
    first.write_text(json.dumps(data))
    with pytest.raises(FormatError, match="NaN"):
        list(read_posetrack(root))


def test_missing_image_is_a_recorded_skip(sample_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "posetrack"
    shutil.copytree(sample_dir / "posetrack", root)
    (root / "images" / "train" / "000002_mpii_train" / "000007.jpg").unlink()
    quarantine = Quarantine()
    assert [r.name for r in read_posetrack(root, "train", quarantine)] == ["000001_bonn_train"]
    (skip,) = [s for s in quarantine.skips if s.field == "file_name"]
    assert skip.key == "posetrack/train/000002_mpii_train/person0" and "000007.jpg" in skip.reason
    with pytest.raises(FormatError, match=r"field file_name: 1 image\(s\) missing"):
        list(read_posetrack(root))


def test_reading_never_swaps_stdout(sample_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Build tasks read in threads: a reader that redirects sys.stdout can leave another
    # thread's output in its buffer, or leave sys.stdout pointing at it.
    original = sys.stdout
    swapped: list[object] = []
    done = threading.Event()

    def read() -> None:
        for _ in range(5):
            list(read_posetrack(sample_dir / "posetrack"))
        done.set()

    thread = threading.Thread(target=read)
    thread.start()
    while not done.wait(0.001):
        if sys.stdout is not original:
            swapped.append(sys.stdout)
    thread.join()
    assert swapped == [] and sys.stdout is original
    assert capsys.readouterr().out == ""


@pytest.mark.usefixtures("sample_truth")  # writes the sample files
def test_malformed_entries_fail_only_their_video(sample_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "posetrack"
    shutil.copytree(sample_dir / "posetrack", root)
    first = root / "posetrack_data" / "annotations" / "train" / "000001_bonn_train.json"
    data = json.loads(first.read_text())
    edits = (
        ("images", lambda d: d["images"].__setitem__(0, 7), "field images"),
        ("annotations", lambda d: d["annotations"].__setitem__(0, 7), "field annotations"),
        ("id", lambda d: d["images"][5].pop("id"), "field images.id"),
        ("image_id", lambda d: d["annotations"][0].__setitem__("image_id", [1]), "image_id"),
    )
    for _, edit, field in edits:
        broken = json.loads(json.dumps(data))
        edit(broken)
        first.write_text(json.dumps(broken))
        with pytest.raises(FormatError, match=rf"000001_bonn_train\.json: .*{field}"):
            list(read_posetrack(root))
        quarantine = Quarantine()
        assert [r.name for r in read_posetrack(root, "train", quarantine)] == ["000002_mpii_train"]
        assert quarantine.skips[0].key == "posetrack/train/000001_bonn_train"
