"""Choosing the frames nearest to a 1/rate grid, as the demo's `ffmpeg -r 30000/1001`."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.frame_rate import DEMO_FPS, NearestFrames, thinned_rate


def _kept(times: list[float | None], rate: float, source_fps: float) -> list[int]:
    chooser = NearestFrames(rate, source_fps)
    return [i for i, t in enumerate(times) if chooser.keep(t)]


def _nearest(times: np.ndarray, rate: float) -> list[int]:
    """The definition, by brute force: per grid time the nearest frame, each frame once; of
    two equally near (50 fps: 10.01 s between frames 500 and 501) the earlier."""
    grid = np.arange(0.0, times[-1], 1.0 / rate)
    return sorted({int(np.argmin(np.round(np.abs(times - t), 9))) for t in grid})


def test_which_videos_are_thinned() -> None:
    assert thinned_rate(60.0, DEMO_FPS) == DEMO_FPS
    assert thinned_rate(31.0, DEMO_FPS) is None  # within 5%: used whole
    assert thinned_rate(32.0, DEMO_FPS) == DEMO_FPS
    assert thinned_rate(25.0, DEMO_FPS) is None  # slower: never duplicated
    assert thinned_rate(60.0, 0.0) is None  # 0: every frame
    assert thinned_rate(0.0, DEMO_FPS) is None  # rate unknown
    with pytest.raises(ValueError, match="got -1"):
        thinned_rate(60.0, -1.0)


@pytest.mark.parametrize("source_fps", [50.0, 59.94, 60.0, 100.0, 120.0, 240.0])
def test_constant_rates_keep_exactly_the_nearest_frames(source_fps: float) -> None:
    """Over 2000 frames, so the 29.97-against-30 drift moves the kept parity at least once."""
    times = np.arange(2000) / source_fps
    kept = _kept(list(times), DEMO_FPS, source_fps)
    assert kept == _nearest(times, DEMO_FPS)
    assert len(kept) == pytest.approx(2000 * DEMO_FPS / source_fps, abs=1)


def test_frames_without_timestamps_fall_back_to_index_over_fps() -> None:
    """OpenCV reports 0 ms where a frame has no timestamp: those count one interval on."""
    assert _kept([0.0] * 12, 30.0, 60.0) == [0, 2, 4, 6, 8, 10]
    assert _kept([None] * 9, 30.0, 120.0) == [0, 4, 8]


def test_a_first_timestamp_after_zero_starts_the_grid() -> None:
    """A stream whose first frame is at 10 s (an edit list, a cut) is timed from it."""
    times = [10.0 + i / 60 for i in range(8)]
    assert _kept(times, 30.0, 60.0) == [0, 2, 4, 6]


def test_rates_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        NearestFrames(0.0, 60.0)
