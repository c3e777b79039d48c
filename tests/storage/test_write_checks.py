"""Values a store cannot hold exactly are refused on write, naming the sequence and the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from store_samples import make_sequence

from storage.errors import StoreError
from storage.provenance import Provenance
from storage.reader import open_store
from storage.writer import StoreWriter

GROUP = "h36m/test/base"


def _add(root: Path, arrays: dict[str, np.ndarray]) -> None:
    writer = StoreWriter(str(root), GROUP, Provenance(code_version="t"))
    writer.add("S9_Walking", 2, 50.0, "h", arrays)
    writer.commit()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("joints3d", 1e39, r"field joints3d overflows float32"),  # float64 past float32's range
        ("frame_index", 2.5, r"field frame_index holds non-integer values \(first at frame 3\)"),
        ("valid", 0.5, r"field valid holds values other than 0 and 1 \(first at frame 3\)"),
        ("pose", "x", r"field pose has dtype <U\d+, not a number"),
    ],
)
def test_a_lossy_value_is_refused_naming_the_field(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    arrays = make_sequence(20, seed=1)
    data = arrays[field].astype(np.float64) if field != "pose" else arrays[field].astype(str)
    data[3] = value
    arrays[field] = data

    with pytest.raises(StoreError, match=rf"{GROUP}/S9_Walking/person2: {message}"):
        _add(tmp_path, arrays)


def test_exact_values_of_other_types_are_stored(tmp_path: Path) -> None:
    """Ints for floats, 0/1 floats for flags, whole floats for frame numbers: stored as given."""
    arrays = make_sequence(20, seed=1)
    arrays["frame_index"] = np.arange(20, dtype=np.float64) + 100  # e.g. read from a .mat
    arrays["has_smpl"] = np.where(np.arange(20) % 2, 1.0, 0.0)
    arrays["bbox"] = np.full((20, 4), 70_000, dtype=np.int64)  # px, beyond float16's range
    arrays["joints3d"] = arrays["joints3d"].astype(np.float64) * 1000.0  # mm

    _add(tmp_path, arrays)

    store = open_store(str(tmp_path), GROUP)
    assert store.read("frame_index", 0, 20).tolist() == list(range(100, 120))
    assert store.read("has_smpl", 0, 20).tolist() == [bool(i % 2) for i in range(20)]
    assert (store.read("bbox", 0, 20) == 70_000).all()
    expected = arrays["joints3d"].astype(np.float32)
    np.testing.assert_array_equal(store.read("joints3d", 0, 20), expected)
