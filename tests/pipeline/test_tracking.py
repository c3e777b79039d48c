"""Track files (MOT CSV, JSON), the median-background detector and the IoU tracker."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.sample.people_video import render_people
from pipeline.tracking import (
    ForegroundDetector,
    IouTracker,
    drop_short,
    iou,
    read_tracks,
    square_boxes,
)
from storage.errors import FormatError, MissingFileError

MOT = """\
# frame,id,x,y,w,h,conf,x,y,z
1,4,10,20,30,60,1,-1,-1,-1
2,4,12,20,30,60,1,-1,-1,-1
2,9,100,50,40,20,0.5,-1,-1,-1
3,4,14,22,30,60,1,-1,-1,-1
"""


def test_mot_csv_frames_are_one_based_and_boxes_become_square(tmp_path: Path) -> None:
    path = tmp_path / "det.txt"
    path.write_text(MOT)
    tracks = read_tracks(path, frame_count=3)
    assert [t.track_id for t in tracks] == [4, 9]
    np.testing.assert_array_equal(tracks[0].frame_ids, [0, 1, 2])
    np.testing.assert_allclose(tracks[0].boxes[0], [25.0, 50.0, 60.0, 60.0])
    np.testing.assert_allclose(tracks[1].boxes, [[120.0, 60.0, 40.0, 40.0]])
    assert [len(t) for t in drop_short(tracks, 2)] == [3]


def test_json_matches_the_csv(tmp_path: Path) -> None:
    entries = [
        {"frame": 0, "people": [{"id": 4, "bbox": [10, 20, 30, 60]}]},
        {"frame": 1, "people": [{"id": 4, "bbox": [12, 20, 30, 60]}]},
    ]
    path = tmp_path / "tracks.json"
    path.write_text(json.dumps(entries))
    (tmp_path / "same.csv").write_text("1,4,10,20,30,60\n2,4,12,20,30,60\n")
    from_json = read_tracks(path, frame_count=2)
    from_csv = read_tracks(tmp_path / "same.csv", frame_count=2)
    np.testing.assert_array_equal(from_json[0].boxes, from_csv[0].boxes)
    np.testing.assert_array_equal(from_json[0].frame_ids, from_csv[0].frame_ids)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "1,4,10,20,30,60\n5,4,10,20,30,60\n",
            r"line 2 field 'frame': frame 5 does not exist; the video has 3 frames, "
            r"numbered 1 to 3 in a MOT CSV",
        ),
        ("0,4,10,20,30,60\n", r"line 1 field 'frame': frame 0 does not exist.* numbered 1 to 3"),
        ("1,4,ten,20,30,60\n", r"line 1 field 'x': 'ten' is not a number"),
        ("1,4,10,20,0,60\n", r"line 1 field 'w'/'h'"),
        ("1,4,10,20,30\n", r"line 1: expected frame,id,x,y,w,h"),
        ("1,4,10,20,30,60\n1,4,11,20,30,60\n", r"line 2: track 4 has two boxes on frame 1\b"),
        ("# only a comment\n", r"no boxes"),
    ],
)
def test_bad_csv_names_file_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tracks.csv"
    path.write_text(text)
    with pytest.raises(FormatError, match=re.escape(str(path)) + ".*" + message):
        read_tracks(path, frame_count=3)


def test_bad_json_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "tracks.json"
    path.write_text(json.dumps([{"frame": 3, "people": [{"id": 1, "bbox": [1, 2, 3, 4]}]}]))
    with pytest.raises(FormatError, match=r"entry 0 field 'frame': frame 3 .* numbered 0 to 2"):
        read_tracks(path, frame_count=3)
    path.write_text(json.dumps([{"frame": 0, "people": [{"id": 1, "bbox": [1, 2, 3]}]}]))
    with pytest.raises(FormatError, match=r"entry 0 field 'bbox'"):
        read_tracks(path, frame_count=3)
    path.write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        read_tracks(path, frame_count=3)
    with pytest.raises(MissingFileError, match=r"absent\.csv"):
        read_tracks(tmp_path / "absent.csv", frame_count=3)


def test_square_boxes_scale_the_longer_side() -> None:
    np.testing.assert_allclose(square_boxes(np.array([[0, 0, 10, 40]]), 1.2), [[5, 20, 48, 48]])


def test_tracker_keeps_ids_through_order_changes_and_short_gaps() -> None:
    tracker = IouTracker(max_gap=2)
    left, right = np.array([10.0, 10, 30, 60]), np.array([100.0, 10, 120, 60])
    step = np.array([1.0, 0, 1, 0])
    first = tracker.update(0, np.stack([left, right]))
    assert [i for i, _ in first] == [1, 2]
    moved = tracker.update(1, np.stack([right + 3 * step, left + 2 * step]))
    assert [i for i, _ in moved] == [1, 2]
    np.testing.assert_allclose(moved[0][1], [22.0, 35.0, 50.0, 50.0])  # left, square
    assert [i for i, _ in tracker.update(3, (left + 4 * step)[None])] == [1]  # after a gap
    assert [i for i, _ in tracker.update(7, right[None])] == [3]  # gap too long: new id
    assert iou(left[None], left[None])[0, 0] == pytest.approx(1.0)


def test_detector_finds_each_person_of_the_sample_video() -> None:
    frames, truth = render_people(people=2, frames=12)
    rgb = [frame[..., ::-1] for frame in frames]
    detector = ForegroundDetector().fit(rgb)
    for t, frame in enumerate(rgb):
        boxes = detector.detect(frame)
        assert len(boxes) == 2
        true_xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (b[t] for b in truth)])
        assert iou(true_xyxy, boxes).max(axis=1).min() > 0.6


@pytest.mark.parametrize("people", [5, None, 2.5])
def test_json_people_that_is_not_a_list_names_the_field(tmp_path: Path, people: object) -> None:
    path = tmp_path / "tracks.json"
    path.write_text(json.dumps([{"frame": 0, "people": people}]))
    with pytest.raises(FormatError, match=re.escape(str(path)) + r" entry 0 field 'people'"):
        read_tracks(path, frame_count=3)


def test_csv_with_a_byte_order_mark_reads_like_without(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts the file with a BOM; the first frame is still frame 1."""
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf1,4,10,20,30,60\r\n2,4,12,20,30,60\r\n")
    tracks = read_tracks(path, frame_count=2)
    np.testing.assert_array_equal(tracks[0].frame_ids, [0, 1])
    np.testing.assert_allclose(tracks[0].boxes[0], [25.0, 50.0, 60.0, 60.0])
    as_json = tmp_path / "excel.json"
    entry = {"frame": 0, "people": [{"id": 4, "bbox": [10, 20, 30, 60]}]}
    as_json.write_bytes(b"\xef\xbb\xbf" + json.dumps([entry]).encode())
    np.testing.assert_allclose(read_tracks(as_json, frame_count=1)[0].boxes[0], [25, 50, 60, 60])


@pytest.mark.parametrize(
    "data",
    [
        "# caf\xe9\n1,4,10,20,30,60\n".encode("latin-1"),
        b"\x00\x00\x00\x1cftypisom\x00\x00\x02\x00\xa7\xff\xd8mdat",  # a video given by mistake
    ],
)
def test_track_file_that_is_not_utf8_text_names_the_file(tmp_path: Path, data: bytes) -> None:
    for name in ("tracks.txt", "tracks.json"):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(FormatError, match=re.escape(str(path)) + ": not UTF-8 text"):
            read_tracks(path, frame_count=3)
