"""Unbroken runs of kept frames: readers split a track where frames are dropped."""

from __future__ import annotations

import numpy as np


def runs(keep: np.ndarray) -> list[tuple[int, int]]:
    """The [start, stop) index ranges where `keep` is True, in order."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(keep, dtype=int), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
