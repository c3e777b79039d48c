"""Synthetic sequences in the store's schema, shared by the storage tests."""

from __future__ import annotations

import numpy as np


def make_sequence(length: int, seed: int, offset: float = 0.0) -> dict[str, np.ndarray]:
    """Arrays of one sequence, with features encoding (seed, frame) to check row mapping."""
    rng = np.random.default_rng(seed)
    features = rng.random((length, 2048), dtype=np.float32)
    features[:, 0] = seed
    features[:, 1] = np.arange(length)
    joints3d = rng.normal(size=(length, 49, 4)).astype(np.float32)
    joints3d[..., 3] = 1.0
    return {
        "features": features + offset,
        "joints2d": rng.random((length, 49, 3), dtype=np.float32) * 500,
        "joints3d": joints3d,
        "pose": rng.normal(size=(length, 72)).astype(np.float32),
        "shape": rng.normal(size=(length, 10)).astype(np.float32),
        "bbox": np.tile(np.array([300.0, 400.0, 200.0, 200.0], np.float32), (length, 1)),
        "frame_index": np.arange(length, dtype=np.int64),
        "valid": np.ones(length, dtype=bool),
        "has_smpl": np.ones(length, dtype=bool),
    }
