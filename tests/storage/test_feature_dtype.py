"""Feature dtype of a store: imported official features stay float32 bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from official_db import threedpw_db

from storage.errors import FormatError, StoreError
from storage.importdb import import_db
from storage.reader import open_store
from storage.schema import check_sequence

RUNS = {"courtyard_a_0": 20, "courtyard_b_0": 150}
"""The second sequence spans two 128-row chunks, so reads cross a block boundary."""


def test_imported_features_equal_the_db_bit_for_bit(tmp_path: Path) -> None:
    db = threedpw_db(tmp_path / "3dpw_test_db.pt", RUNS)
    import_db(tmp_path / "3dpw_test_db.pt", "3dpw", "test", str(tmp_path), "g")
    store = open_store(str(tmp_path), "g")
    assert store.provenance.feature_dtype == "float32"
    whole = store.read("features", 0, 170)
    assert whole.dtype == np.float32
    assert whole.tobytes() == db["features"].tobytes()
    rows = np.array([3, 19, 20, 140, 169])
    gathered = store.rows("features", rows)
    assert gathered.dtype == np.float32 and gathered.tobytes() == db["features"][rows].tobytes()
    span = store.span("features", 120, 16)
    assert span.tobytes() == db["features"][120:136].tobytes()


def test_float16_import_halves_and_a_dtype_change_rebuilds(tmp_path: Path) -> None:
    db = threedpw_db(tmp_path / "3dpw_test_db.pt", RUNS)
    path = tmp_path / "3dpw_test_db.pt"
    import_db(path, "3dpw", "test", str(tmp_path), "g", features_dtype="float16")
    store = open_store(str(tmp_path), "g")
    assert store.provenance.feature_dtype == "float16"
    half = store.read("features", 0, 170)
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, db["features"].astype(np.float16))
    plan = import_db(path, "3dpw", "test", str(tmp_path), "g")
    assert len(plan.add) == 2 and not plan.unchanged  # provenance differs: everything rewritten
    assert open_store(str(tmp_path), "g").read("features", 0, 170).dtype == np.float32


def test_unknown_feature_dtype_is_refused(tmp_path: Path) -> None:
    threedpw_db(tmp_path / "3dpw_test_db.pt", RUNS)
    with pytest.raises(FormatError, match="float64"):
        import_db(tmp_path / "3dpw_test_db.pt", "3dpw", "test", str(tmp_path), "g", None, None,
                  "float64")  # fmt: skip
    arrays = {"features": np.full((2, 2048), 1e6, np.float32)}
    with pytest.raises(StoreError, match="float16"):
        check_sequence("x", {**_filled(2), **arrays})


def _filled(n: int) -> dict[str, np.ndarray]:
    return {
        "joints2d": np.zeros((n, 49, 3)), "joints3d": np.zeros((n, 49, 4)),
        "pose": np.zeros((n, 72)), "shape": np.zeros((n, 10)), "bbox": np.zeros((n, 4)),
        "frame_index": np.arange(n), "valid": np.ones(n, bool), "has_smpl": np.zeros(n, bool),
    }  # fmt: skip
