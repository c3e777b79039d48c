"""Streaming frames -> per-track crops -> backbone features, and the overlay video writer."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from pipeline.crop import crop_image, normalize
from pipeline.overlay import PersonDrawing, mesh_edges, write_overlay
from pipeline.sample.figure import write_jpegs
from pipeline.tracking import Track
from pipeline.video_features import FrameSource, extract_video_features
from storage.errors import FormatError


class MeanColour(nn.Module):
    """A stand-in backbone (a real module): the crop's mean per channel, padded to 2048.

    It records every batch size, so a test sees which crops reached it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(x))
        return nn.functional.pad(x.mean(dim=(2, 3)), (0, 2045))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Six 64x48 JPEG frames, each a different flat colour with a bright square."""
    frames = []
    for t in range(6):
        frame = np.full((48, 64, 3), 40 * t, np.uint8)
        frame[10:30, 20:40] = (200, 100, 50)
        frames.append(frame)
    write_jpegs(tmp_path / "frames", frames)
    return tmp_path / "frames"


def test_folder_source_reads_every_image_in_order(folder: Path) -> None:
    source = FrameSource(folder)
    assert (source.frame_count, source.width, source.height) == (6, 64, 48)
    assert source.name == "frames"
    frames = list(source.frames())
    assert [index for index, _ in frames] == list(range(6))
    assert abs(int(frames[3][1][0, 0, 0]) - 120) <= 3  # corner colour survives JPEG


def test_folder_with_a_different_image_size_names_it(folder: Path) -> None:
    odd = folder / "000006.jpg"
    cv2.imwrite(str(odd), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(FormatError, match=r"000006\.jpg: image is 10x10"):
        list(FrameSource(folder).frames())


def test_features_of_kept_tracks_only(folder: Path) -> None:
    boxes = np.tile([30.0, 20.0, 20.0, 20.0], (6, 1))
    tracks = [
        Track(5, np.arange(6), boxes),
        Track(6, np.array([1, 2]), boxes[:2]),  # too short: never reaches the backbone
    ]
    backbone = MeanColour()
    result = extract_video_features(
        FrameSource(folder), backbone, tracks, min_track_len=4, batch_size=4
    )
    assert [t.track_id for t in result.tracks] == [5]
    kept = result.tracks[0]
    np.testing.assert_array_equal(kept.frame_ids, np.arange(6))
    np.testing.assert_allclose(kept.bboxes[0], [30.0, 20.0, 24.0, 24.0])  # x 1.2
    assert sum(backbone.batches) == 6  # track 6's two frames never ran (CPU: one at a time)
    images = [frame for _, frame in FrameSource(folder).frames()]
    crops = np.stack([crop_image(image, boxes[0], 1.2) for image in images])
    expected = normalize(crops).mean(axis=(2, 3))
    np.testing.assert_allclose(kept.features[:, :3], expected, atol=1e-4)
    assert not kept.features[:, 3:].any()
    assert set(result.seconds) == {"decode", "detect/track", "crop", "features"}


def test_overlay_draws_people_on_their_frames(tmp_path: Path) -> None:
    faces = np.array([[0, 1, 2], [1, 3, 2]])
    assert mesh_edges(faces).tolist() == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]]
    frames = [(t, np.zeros((48, 64, 3), np.uint8)) for t in range(3)]
    vertices = np.array([[10.0, 10.0], [50.0, 10.0], [10.0, 40.0], [50.0, 40.0]])
    person = PersonDrawing(track_id=0, vertices=vertices, joints=np.array([[30.0, 25.0]]))
    path = tmp_path / "overlay.avi"
    count = write_overlay(path, iter(frames), lambda t: [person] if t == 1 else [], faces, 10.0)
    assert count == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["overlay.avi"]
    capture = cv2.VideoCapture(str(path))
    read = [capture.read()[1] for _ in range(3)]
    capture.release()
    assert read[0].max() < 30 and read[2].max() < 30
    assert read[1][25, 30].max() > 100  # the joint dot
    assert read[1][10, 30].max() > 60  # the top edge of the wireframe
    with pytest.raises(FormatError, match=r"overlay\.gif"):
        write_overlay(tmp_path / "overlay.gif", iter(frames), lambda t: [], faces, 10.0)


def _avi_with_frame_count(path: Path, frames: int, header_frames: int) -> None:
    """An MJPG AVI of `frames` grey levels whose RIFF header claims `header_frames`.

    Patched per the AVI layout: `avih` dwTotalFrames is the 5th DWORD of the main header,
    `strh` dwLength the 9th DWORD of the stream header (after fccType and fccHandler).
    """
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (64, 48))
    for t in range(frames):
        writer.write(np.full((48, 64, 3), 10 * t, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    avih, strh = data.index(b"avih"), data.index(b"strh")
    assert struct.unpack_from("<I", data, avih + 8 + 16) == (frames,)
    assert struct.unpack_from("<I", data, strh + 8 + 32) == (frames,)
    struct.pack_into("<I", data, avih + 8 + 16, header_frames)
    struct.pack_into("<I", data, strh + 8 + 32, header_frames)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("header_frames", [12, 40, 0])
def test_video_whose_header_miscounts_frames_is_read_to_its_end(
    tmp_path: Path, header_frames: int
) -> None:
    """The demo's ffmpeg decodes every frame whatever the header says; so must we."""
    path = tmp_path / "clip.avi"
    _avi_with_frame_count(path, frames=20, header_frames=header_frames)
    source = FrameSource(path)
    assert source.frame_count == 20
    frames = list(source.frames())
    assert [index for index, _ in frames] == list(range(20))
    assert abs(int(frames[-1][1].mean()) - 190) <= 3  # the last frame's grey level


def test_folder_frames_numbered_without_zero_padding_keep_their_order(tmp_path: Path) -> None:
    """frame_2.png is the third frame, not the twelfth (after frame_10 .. frame_19)."""
    folder = tmp_path / "export"
    folder.mkdir()
    for t in range(20):
        cv2.imwrite(str(folder / f"frame_{t}.png"), np.full((8, 8, 3), 10 * t, np.uint8))
    levels = [int(frame[0, 0, 0]) for _, frame in FrameSource(folder).frames()]
    assert levels == [10 * t for t in range(20)]


def test_folder_with_a_different_image_size_names_it_before_detection(tmp_path: Path) -> None:
    """Without a track file the detector samples frames first; an odd one is named there too."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for t in range(30):
        height = 40 if t == 29 else 48  # the last frame, which the background sample includes
        cv2.imwrite(str(folder / f"{t:04d}.png"), np.full((height, 64, 3), 8 * t, np.uint8))
    with pytest.raises(FormatError, match=r"0029\.png: image is 64x40.*field: image size"):
        extract_video_features(FrameSource(folder), MeanColour(), None, min_track_len=25)


def _peak_bytes_of_flashes(folder: Path, blobs: int) -> int:
    """Peak traced memory of extracting a 180-frame clip where `blobs` blobs flash for 3 of
    every 10 frames, at new places each time (so each flash is a new, short track)."""
    folder.mkdir()
    for t in range(180):
        frame = np.full((120, 160, 3), 100, np.uint8)
        if t % 10 < 3:
            for k in range(blobs):
                x = (17 * (t // 10) + 50 * k) % 130
                frame[40:80, x : x + 24] = 230
        cv2.imwrite(str(folder / f"{t:04d}.png"), frame)
    tracemalloc.start()
    try:
        result = extract_video_features(FrameSource(folder), MeanColour(), None, min_track_len=25)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.tracks == []
    return peak


def test_short_tracklets_of_the_detector_free_their_crops(tmp_path: Path) -> None:
    """Spurious tracklets far below min_track_len must not pile up 224x224 crops (150 kB
    each) until the end of the video: a track holds its crops only while the tracker may
    still extend it. Here 162 flashed crops would be 24 MB over the clip without flashes."""
    quiet = _peak_bytes_of_flashes(tmp_path / "quiet", blobs=0)
    flashing = _peak_bytes_of_flashes(tmp_path / "flashing", blobs=3)
    assert flashing - quiet < 2e6, f"{(flashing - quiet) / 1e6:.1f} MB more"


def _mp4_boxes(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """ISO BMFF boxes by type -> (offset, size), descending into the moov track containers."""
    boxes, offset = {}, start
    while offset < end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        boxes[kind] = (offset, size)
        if kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
            boxes.update(_mp4_boxes(data, offset + 8, offset + size))
        offset += size
    return boxes


def _variable_rate_mp4(
    path: Path, rates: tuple[tuple[int, int], ...] = ((15, 30), (15, 10))
) -> None:
    """Grey frames (level 240 // count * t) in runs of (frames, fps); by default the first 15
    last 1/30 s each, the last 15 1/10 s (2 s in all).

    OpenCV writes a constant-rate mp4 with its moov after mdat; its stts (sample durations)
    is replaced by the runs, the edit list blanked (a free box) and mdhd/tkhd/mvhd durations
    set to the new length, so no sample offset moves."""
    count = sum(frames for frames, _ in rates)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (64, 48))
    for t in range(count):
        writer.write(np.full((48, 64, 3), 240 // count * t, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    boxes = _mp4_boxes(data, 0, len(data))
    assert boxes[b"mdat"][0] < boxes[b"moov"][0]
    assert all(data[boxes[kind][0] + 8] == 0 for kind in (b"mdhd", b"mvhd", b"tkhd"))  # v0
    timescale = struct.unpack_from(">I", data, boxes[b"mdhd"][0] + 20)[0]
    assert all(timescale % fps == 0 for _, fps in rates)
    runs = [(frames, timescale // fps) for frames, fps in rates]
    total = sum(count * delta for count, delta in runs)
    movie_scale = struct.unpack_from(">I", data, boxes[b"mvhd"][0] + 20)[0]
    struct.pack_into(">I", data, boxes[b"mdhd"][0] + 24, total)
    struct.pack_into(">I", data, boxes[b"mvhd"][0] + 24, total * movie_scale // timescale)
    struct.pack_into(">I", data, boxes[b"tkhd"][0] + 28, total * movie_scale // timescale)
    edts = boxes[b"edts"][0]
    data[edts + 4 : edts + 8] = b"free"
    stts = struct.pack(">I4sII", 16 + 8 * len(runs), b"stts", 0, len(runs))
    stts += b"".join(struct.pack(">II", *run) for run in runs)
    offset, size = boxes[b"stts"]
    growth = len(stts) - size
    for kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
        struct.pack_into(">I", data, boxes[kind][0], boxes[kind][1] + growth)
    path.write_bytes(bytes(data[:offset] + stts + data[offset + size :]))


def test_variable_frame_rate_video_is_read_whole_at_its_mean_rate(tmp_path: Path) -> None:
    """Every decoded frame is a frame (no resampling); the overlay's rate keeps the length."""
    path = tmp_path / "phone.mp4"
    _variable_rate_mp4(path)
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 29)
    assert not capture.read()[0]  # frame numbers from timestamps: seeking misses the end
    capture.release()
    source = FrameSource(path)
    assert source.frame_count == 30
    assert source.fps == pytest.approx(15.0)
    levels = [int(frame.mean()) for _, frame in source.frames()]
    assert len(levels) == 30 and abs(levels[-1] - 232) <= 4


def test_phone_portrait_video_is_read_upright_with_matching_size(tmp_path: Path) -> None:
    """A phone stores portrait video as landscape plus a 90-degree display matrix (tkhd);
    the frames and the size the cameras are converted with must both be the upright ones."""
    path = tmp_path / "portrait.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (64, 48))
    for _ in range(3):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:12, :16] = 255  # a white block in the stored frame's top-left corner
        writer.write(frame)
    writer.release()
    data = bytearray(path.read_bytes())
    tkhd = _mp4_boxes(data, 0, len(data))[b"tkhd"][0]
    assert data[tkhd + 8] == 0  # version 0: 32-bit times and duration
    # Header, version/flags, times, id, reserved, duration, reserved, layer..volume, matrix.
    matrix = tkhd + 8 + 4 + 4 * 5 + 8 + 2 * 4
    assert struct.unpack_from(">9i", data, matrix) == (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30)
    struct.pack_into(">9i", data, matrix, 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)  # 90 cw
    path.write_bytes(bytes(data))
    source = FrameSource(path)
    assert (source.width, source.height) == (48, 64)
    frame = next(source.frames())[1]
    assert frame.shape == (64, 48, 3)
    assert frame[:16, -12:].mean() > 200 and frame[:16, :12].mean() < 50  # now top-right


def test_hidden_files_in_an_image_folder_are_not_frames(folder: Path) -> None:
    """macOS leaves '._name' AppleDouble files (not images) next to each copied file."""
    for image in sorted(folder.iterdir()):
        (folder / f"._{image.name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    source = FrameSource(folder)
    assert source.frame_count == 6
    assert len(list(source.frames())) == 6


def _grey_video(path: Path, fps: float, frames: int) -> Path:
    """An mp4 whose frame t is flat grey level 6 t, at a constant `fps`."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (64, 48))
    for t in range(frames):
        writer.write(np.full((48, 64, 3), 6 * t, np.uint8))
    writer.release()
    return path


def _kept(source: FrameSource) -> list[int]:
    """The frame numbers `source` yields, after checking each frame is the video's frame of
    that number (as reading every frame gives it)."""
    every = dict(FrameSource(source.path).frames())
    kept = list(source.frames())
    for index, frame in kept:
        np.testing.assert_array_equal(frame, every[index])
    return [index for index, _ in kept]


def test_a_60_fps_video_keeps_every_second_frame_numbered_as_in_the_video(
    tmp_path: Path,
) -> None:
    """Nearest frames to k / 29.97 s: 0, 2, 4, ... (the drift reaches a frame after 500)."""
    source = FrameSource(_grey_video(tmp_path / "phone.mp4", 60.0, 40), max_fps=30000 / 1001)
    assert source.frame_count == 40 and source.fps == pytest.approx(60.0)
    assert source.rate == pytest.approx(29.97, abs=1e-3)
    assert _kept(source) == list(range(0, 40, 2))


def test_a_50_fps_video_keeps_the_nearest_frames(tmp_path: Path) -> None:
    """Frame nearest to k / 29.97 s at 50 fps: round(k x 1.6683) = 0 2 3 5 7 8 10 12 13 15 17
    18 20 22 23 (worked by hand: k = 3 gives 5.005, k = 6 gives 10.01)."""
    source = FrameSource(_grey_video(tmp_path / "pal.mp4", 50.0, 25), max_fps=30000 / 1001)
    assert _kept(source) == [0, 2, 3, 5, 7, 8, 10, 12, 13, 15, 17, 18, 20, 22, 23]


def test_a_120_fps_video_keeps_every_fourth_frame(tmp_path: Path) -> None:
    source = FrameSource(_grey_video(tmp_path / "slowmo.mp4", 120.0, 24), max_fps=30000 / 1001)
    assert _kept(source) == [0, 4, 8, 12, 16, 20]


@pytest.mark.parametrize(("fps", "max_fps"), [(25.0, 30000 / 1001), (30.0, 30000 / 1001)])
def test_a_video_at_or_below_the_rate_is_used_whole(
    tmp_path: Path, fps: float, max_fps: float
) -> None:
    """Never duplicated (25 fps stays 25 frames a second), and 30 fps is within 5% of 29.97."""
    source = FrameSource(_grey_video(tmp_path / "clip.mp4", fps, 12), max_fps=max_fps)
    assert source.thinned_to is None and source.rate == pytest.approx(fps)
    assert _kept(source) == list(range(12))


def test_max_fps_zero_keeps_every_frame(tmp_path: Path) -> None:
    source = FrameSource(_grey_video(tmp_path / "phone.mp4", 60.0, 12), max_fps=0)
    assert source.rate == pytest.approx(60.0)
    assert _kept(source) == list(range(12))


def test_an_image_folder_is_used_whole_whatever_the_rate(folder: Path) -> None:
    source = FrameSource(folder, max_fps=10.0)
    assert source.thinned_to is None
    assert [index for index, _ in source.frames()] == list(range(6))


def test_a_variable_rate_video_is_thinned_by_its_timestamps(tmp_path: Path) -> None:
    """20 frames of 1/60 s, then 20 of 1/30 s (40 fps on average): every 2nd frame of the
    fast part (frame 20 at 1/3 s is nearest to 10 / 29.97 s), then every frame. Index / fps
    at the mean rate would keep 27 evenly spread frames instead."""
    path = tmp_path / "phone.mp4"
    _variable_rate_mp4(path, rates=((20, 60), (20, 30)))
    source = FrameSource(path, max_fps=30000 / 1001)
    assert source.fps == pytest.approx(40.0)
    indices = [index for index, _ in source.frames()]
    assert indices == [*range(0, 20, 2), *range(20, 40)]


def test_a_track_file_on_a_thinned_video(tmp_path: Path) -> None:
    """Boxes on dropped frames are ignored (never cropped); a track is long enough only by
    its kept frames; kept frames keep the video's numbers."""
    source = FrameSource(_grey_video(tmp_path / "phone.mp4", 60.0, 40), max_fps=30000 / 1001)
    boxes = np.tile([32.0, 24.0, 20.0, 20.0], (40, 1))
    tracks = [
        Track(1, np.arange(40), boxes),  # 20 kept frames
        Track(2, np.arange(1, 40, 2), boxes[:20]),  # only on dropped frames
        Track(3, np.arange(30), boxes[:30]),  # 30 boxes, but 15 kept: too short
    ]
    backbone = MeanColour()
    result = extract_video_features(source, backbone, tracks, min_track_len=16, batch_size=8)
    assert [t.track_id for t in result.tracks] == [1]
    np.testing.assert_array_equal(result.tracks[0].frame_ids, np.arange(0, 40, 2))
    assert (result.frame_count, result.kept_frames) == (40, 20)
    assert result.rate == pytest.approx(29.97, abs=1e-3)
    assert sum(backbone.batches) == 20  # track 1's kept crops only
    # Each feature is that of the crop of the video's frame with its number.
    every = dict(FrameSource(source.path).frames())
    crops = np.stack([crop_image(every[i], boxes[0], 1.2) for i in range(0, 40, 2)])
    expected = normalize(crops).mean(axis=(2, 3))
    np.testing.assert_allclose(result.tracks[0].features[:, :3], expected, atol=1e-4)
