"""Writers of official preprocessed db files, from the layouts in datasets.md §2.1.

Written independently of `storage.importdb`: joblib dicts of parallel numpy arrays (one row
per frame, a track's rows contiguous) and VIBE's merged InstaVariety HDF5.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import joblib
import numpy as np


def _names(runs: dict[str, int]) -> np.ndarray:
    return np.array([name for name, n in runs.items() for _ in range(n)])


def threedpw_db(path: Path, runs: dict[str, int], split: str = "test", seed: int = 0) -> dict:
    """`3dpw_{split}_db.pt`: joints2D common-14 with vis in {0, 1}; joints3D 14 (val/test)."""
    rng = np.random.default_rng(seed)
    n = sum(runs.values())
    j2d = rng.random((n, 14, 3)) * 1000
    j2d[..., 2] = rng.random((n, 14)) > 0.3
    db = {
        "vid_name": _names(runs),
        "frame_id": np.concatenate([np.arange(k) for k in runs.values()]),
        "img_name": np.array([f"imageFiles/x/image_{i:05d}.jpg" for i in range(n)]),
        "joints3D": rng.normal(size=(n, 49 if split == "train" else 14, 3)),
        "joints2D": j2d,
        "shape": rng.normal(size=(n, 10)),
        "pose": rng.normal(size=(n, 72)),
        "bbox": np.tile([540.0, 960.0, 400.0, 400.0], (n, 1)),
        "valid": np.ones(n, dtype=bool),
        "features": rng.random((n, 2048)).astype(np.float32),
    }
    joblib.dump(db, path)
    return db


def mpii3d_val_db(path: Path, runs: dict[str, int], seed: int = 1) -> dict:
    """`mpii3d_val_scale12_db.pt`: spin-49 joints, file-stem frame ids, `valid_i` (N, 1)."""
    rng = np.random.default_rng(seed)
    n = sum(runs.values())
    valid = np.ones((n, 1), dtype=np.float64)
    valid[2] = 0
    db = {
        "vid_name": _names(runs),
        "frame_id": np.array([f"img_{i + 1:06d}" for i in range(n)]),
        "img_name": np.array([f"TS1/imageSequence/img_{i + 1:06d}.jpg" for i in range(n)]),
        "joints2D": rng.random((n, 49, 3)) * 2048,
        "joints3D": rng.normal(size=(n, 49, 3)),
        "bbox": np.tile([1024.0, 1024.0, 800.0, 800.0], (n, 1)),
        "valid_i": valid,
        "features": rng.random((n, 2048)).astype(np.float32),
    }
    joblib.dump(db, path)
    return db


def h36m_db(path: Path, runs: dict[str, int], seed: int = 2) -> dict:
    """`h36m_test_25fps_tight_db.pt`: spin-49 joints, zero pose and shape."""
    rng = np.random.default_rng(seed)
    n = sum(runs.values())
    db = {
        "vid_name": _names(runs),
        "frame_id": np.concatenate([np.arange(0, 2 * k, 2) for k in runs.values()]),
        "joints3D": rng.normal(size=(n, 49, 3)),
        "joints2D": rng.random((n, 49, 3)) * 1000,
        "shape": np.zeros((n, 10)),
        "pose": np.zeros((n, 72)),
        "bbox": np.tile([500.0, 500.0, 300.0, 300.0], (n, 1)),
        "img_name": np.array([f"images/s_09/{i:06d}.jpg" for i in range(n)]),
        "features": rng.random((n, 2048)).astype(np.float32),
    }
    joblib.dump(db, path)
    return db


def two_d_db(path: Path, runs: dict[str, int], joints: int, seed: int = 3) -> dict:
    """`posetrack_train_db.pt` (spin-49) or `pennaction_train_db.pt` (common-14)."""
    rng = np.random.default_rng(seed)
    n = sum(runs.values())
    db = {
        "img_name": np.array([f"frames/{i:06d}.jpg" for i in range(n)]),
        "joints2D": rng.random((n, joints, 3)) * 500,
        "bbox": np.tile([250.0, 250.0, 200.0, 200.0], (n, 1)),
        "vid_name": _names(runs),
        "features": rng.random((n, 2048)).astype(np.float32),
    }
    joblib.dump(db, path)
    return db


def insta_db(path: Path, runs: dict[str, int], seed: int = 4) -> dict:
    """`insta_train_db.h5`: byte-string vid_name, int frame_id, joints2D (25, 3) crop px."""
    rng = np.random.default_rng(seed)
    n = sum(runs.values())
    db = {
        "vid_name": np.array([name.encode() for name, k in runs.items() for _ in range(k)]),
        "frame_id": np.concatenate([np.arange(k) for k in runs.values()]).astype(np.int64),
        "joints2D": (rng.random((n, 25, 3)) * 224).astype(np.float32),
        "features": rng.random((n, 2048)).astype(np.float32),
    }
    with h5py.File(path, "w") as handle:
        for key, value in db.items():
            handle.create_dataset(key, data=value)
    return db
