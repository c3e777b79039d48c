"""Which frames of a video TCMR sees: those nearest to a grid of 1/rate s, as the demo's ffmpeg.

TCMR was trained on 25-30 fps data, and its 16-frame windows must span the time it learnt
(the paper's Table 8: at 15 fps the acceleration error doubles). The official demo therefore
re-encodes every video with `ffmpeg -r 30000/1001`. Here a faster video is thinned instead:
for each time k / rate after the first frame, the frame whose timestamp is nearest is kept,
each frame at most once (ffmpeg's fps filter with round=near, without its duplicates). A
video at or below the rate is used whole: repeating frames adds no information.

The choice streams: a frame is decided when it is decoded, so frames that are dropped are
never converted, cropped or run through the backbone. Whether a frame is nearer to a grid
time than the next one is judged with the next frame expected one interval later (exact at a
constant rate; within half the change of interval where a variable rate changes).
"""

from __future__ import annotations

DEMO_FPS = 30000 / 1001
"""The demo's `ffmpeg -r 30000/1001`: 29.97 fps."""
TOLERANCE = 0.05
"""A video up to 5% faster than the rate is used whole (30 fps against 29.97 fps)."""
TIE_SECONDS = 1e-6
"""Grid times this close to midway between two frames go to the earlier one (rounding of
timestamps and of k / rate must not decide)."""


def thinned_rate(source_fps: float, rate: float) -> float | None:
    """The rate a video of `source_fps` is thinned to, or None when it is used whole.

    `rate` 0 keeps every frame; so does a source rate that is unknown (0) or within
    `TOLERANCE` of `rate`.
    """
    if rate < 0:
        raise ValueError(f"frame rate must be 0 (every frame) or positive, got {rate}")
    if rate == 0 or source_fps <= rate * (1 + TOLERANCE):
        return None
    return rate


class NearestFrames:
    """Streaming choice of the frames nearest to the times k / `rate` after the first frame.

    `keep(timestamp)` is asked once per decoded frame, in order. A timestamp that is missing
    or not after the previous one (a decoder that gives none) counts as one `source_fps`
    interval after the previous frame, so such videos fall back to index / fps.
    """

    def __init__(self, rate: float, source_fps: float) -> None:
        if rate <= 0 or source_fps <= 0:
            raise ValueError(f"rates must be positive, got {rate} and {source_fps}")
        self.rate = rate
        self.interval = 1.0 / source_fps
        self._start: float | None = None
        self._previous = 0.0
        self._next = 0
        """Index k of the first grid time no kept frame has served yet."""

    def keep(self, timestamp: float | None) -> bool:
        """Whether this frame (at `timestamp` seconds) is kept."""
        if self._start is None:
            self._start = timestamp or 0.0
            self._next = 1
            return True
        time = None if timestamp is None else timestamp - self._start
        if time is None or time <= self._previous:
            time = self._previous + self.interval
        else:
            self.interval = time - self._previous
        self._previous = time
        # Grid times up to here are nearer to this frame than to the next, expected one
        # interval later (a tie goes to this, the earlier); earlier frames were not kept for
        # them.
        reach = time + self.interval / 2 + TIE_SECONDS
        if self._next / self.rate > reach:
            return False
        # This frame serves the first of them; the others get no frame (no duplicates).
        while self._next / self.rate <= reach:
            self._next += 1
        return True
