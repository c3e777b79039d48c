"""Synthetic feature stores: random features and labels in the store schema, no dataset needed.

Training, evaluation and their benchmarks take a store as input; this writes a small one
with `storage.writer.StoreWriter` (so, unlike the dataset samples, it is not independent of
our store code: it is for code that reads stores, not for testing the store itself).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storage.provenance import Provenance
from storage.writer import StoreWriter


def _sequence_arrays(
    length: int, seed: int, with_3d: bool, with_smpl: bool
) -> dict[str, np.ndarray]:
    """Random features, plausible small poses, 49 joints near a 1.7 m body, a fixed bbox."""
    rng = np.random.default_rng(seed)
    joints3d = np.zeros((length, 49, 4), np.float32)
    if with_3d:
        joints3d[..., :3] = rng.normal(scale=0.3, size=(length, 49, 3))
        joints3d[..., 3] = 1.0
    joints2d = rng.random((length, 49, 3), dtype=np.float32) * 200 + 100
    joints2d[..., 2] = 1.0
    return {
        "features": rng.normal(size=(length, 2048)).astype(np.float32),
        "joints2d": joints2d,
        "joints3d": joints3d,
        "pose": (rng.normal(scale=0.2, size=(length, 72)) * with_smpl).astype(np.float32),
        "shape": (rng.normal(scale=0.5, size=(length, 10)) * with_smpl).astype(np.float32),
        "bbox": np.tile(np.array([200.0, 200.0, 150.0, 150.0], np.float32), (length, 1)),
        "frame_index": np.arange(length, dtype=np.int64),
        "valid": np.ones(length, dtype=bool),
        "has_smpl": np.full(length, with_smpl),
    }


def write_sample_store(
    root: Path,
    group: str,
    lengths: list[int],
    seed: int = 0,
    with_3d: bool = True,
    with_smpl: bool = True,
    eval_keep_valid: bool = True,
) -> list[dict[str, np.ndarray]]:
    """Write one store group of sequences seq0, seq1, ... of these lengths; returns their
    arrays, so a caller can compare what it reads back or predicts with what was written.

    `with_3d=False` leaves the 3D joints masked (an InstaVariety-like 2D set);
    `with_smpl=False` zeroes pose and shape and clears `has_smpl`.
    """
    writer = StoreWriter(str(root), group, Provenance(), eval_keep_valid=eval_keep_valid)
    out = []
    for i, length in enumerate(lengths):
        arrays = _sequence_arrays(length, seed * 100 + i, with_3d, with_smpl)
        writer.add(f"seq{i}", 0, 30.0, f"{group}-{i}", arrays)
        out.append(arrays)
    writer.commit()
    return out
