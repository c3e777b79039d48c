"""Writer, reader, refresh, compaction and atomic commits on a local store."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from store_samples import make_sequence

from storage import schema
from storage.backend import STORE_ATTR
from storage.errors import StoreError
from storage.maintenance import collect_garbage, compact, plan_refresh
from storage.provenance import Provenance
from storage.reader import content_hashes, open_store, store_groups
from storage.writer import SegmentWriter, StoreWriter

GROUP = "3dpw/test/base"


def write(
    root: Path, provenance: Provenance, lengths: dict[str, int], mode: str = "append"
) -> None:
    writer = StoreWriter(str(root), GROUP, provenance, mode=mode)
    for i, (name, length) in enumerate(lengths.items()):
        writer.add(name, 0, 30.0, f"hash-{name}-{length}", make_sequence(length, seed=i + 1))
    writer.commit()


def test_roundtrip_rows_sequences_windows(tmp_path: Path, provenance: Provenance) -> None:
    write(tmp_path, provenance, {"a": 40, "b": 10, "c": 35})
    store = open_store(str(tmp_path), GROUP)
    assert len(store) == 85
    assert [(s.name, s.first_row, s.length) for s in store.sequences] == [
        ("a", 0, 40), ("b", 40, 10), ("c", 50, 35),
    ]  # fmt: skip
    assert store.provenance == provenance
    expected = make_sequence(35, seed=3)
    np.testing.assert_allclose(store.read("features", 50, 85), expected["features"], atol=1e-3)
    assert store.read("features", 50, 85).dtype == np.float16
    np.testing.assert_array_equal(store.read("joints3d", 50, 85), expected["joints3d"])
    np.testing.assert_array_equal(store.rows("pose", np.arange(60, 76)), expected["pose"][10:26])
    assert store.read("has_3d", 0, 85).all()
    assert len(store.windows("eval_tcmr")) == 75
    assert len(store.windows("eval_vibe")) == 64
    np.testing.assert_array_equal(store.windows("train_stride16"), [0, 16, 50, 66])
    assert store_groups(str(tmp_path)) == [GROUP]
    # A Store pickles to its location and reopens its arrays lazily (DataLoader workers).
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.read("bbox", 3, 5), store.read("bbox", 3, 5))


def test_many_shards_and_block_cache(tmp_path: Path, provenance: Provenance, monkeypatch) -> None:
    monkeypatch.setattr("storage.writer.SHARD_ROWS", 64)
    monkeypatch.setattr("storage.writer.CHUNK_ROWS", 16)
    monkeypatch.setattr("storage.reader.CHUNK_ROWS", 16)
    write(tmp_path, provenance, {"a": 150, "b": 70})
    store = open_store(str(tmp_path), GROUP, cache_bytes=1 << 16)
    second = make_sequence(70, seed=2)
    rows = np.array([150, 219, 151, 180])
    np.testing.assert_array_equal(store.rows("joints2d", rows), second["joints2d"][rows - 150])
    assert store.read("frame_index", 0, 220).tolist() == list(range(150)) + list(range(70))
    # A window spanning two 16-row blocks, and one crossing a sequence end (slow path).
    np.testing.assert_array_equal(store.span("pose", 158, 16), second["pose"][8:24])
    first = make_sequence(150, seed=1)
    np.testing.assert_array_equal(store.span("shape", 140, 16)[:10], first["shape"][140:])
    np.testing.assert_array_equal(store.span("shape", 140, 16)[10:], second["shape"][:6])


def test_refresh_append_replace_drop_then_compact(tmp_path: Path, provenance: Provenance) -> None:
    write(tmp_path, provenance, {"a": 20, "b": 18, "c": 17})
    first = open_store(str(tmp_path), GROUP)
    incoming = {("a", 0): "hash-a-20", ("b", 0): "changed", ("d", 0): "new"}
    plan = plan_refresh(content_hashes(str(tmp_path), GROUP), incoming)
    assert plan.add == [("d", 0)] and plan.replace == [("b", 0)] and plan.drop == [("c", 0)]
    assert plan.unchanged == [("a", 0)]
    writer = StoreWriter(str(tmp_path), GROUP, provenance)
    writer.add("b", 0, 30.0, "changed", make_sequence(19, seed=7))
    writer.add("d", 0, 25.0, "new", make_sequence(16, seed=8))
    writer.drop("c", 0)
    writer.commit()
    store = open_store(str(tmp_path), GROUP)
    assert [(s.name, s.length) for s in store.sequences] == [("a", 20), ("b", 19), ("d", 16)]
    assert content_hashes(str(tmp_path), GROUP)[("b", 0)] == "changed"
    assert len(store.segments) == 2  # the first segment was not rewritten
    np.testing.assert_allclose(
        store.read("features", 20, 39), make_sequence(19, seed=7)["features"], atol=1e-3
    )
    # The reader opened before the refresh still sees its own version.
    assert [s.name for s in first.sequences] == ["a", "b", "c"]
    before = store.read("pose", 0, 55)
    compacted = compact(str(tmp_path), GROUP)
    assert len(compacted.segments) == 1
    assert [(s.name, s.length) for s in compacted.sequences] == [("a", 20), ("b", 19), ("d", 16)]
    np.testing.assert_array_equal(compacted.read("pose", 0, 55), before)
    segments = [p for p in (tmp_path / GROUP / "segments").iterdir() if p.is_dir()]
    assert [p.name for p in segments] == compacted.segments
    assert len([p for p in (tmp_path / GROUP / "index").iterdir() if p.is_dir()]) == 1


def test_killed_writer_leaves_previous_version(tmp_path: Path, provenance: Provenance) -> None:
    write(tmp_path, provenance, {"a": 20})
    writer = StoreWriter(str(tmp_path), GROUP, provenance)
    writer.add("b", 0, 30.0, "h", make_sequence(30, seed=5))
    writer._writer.close()  # data written, but the pointer never swapped (process killed)
    store = open_store(str(tmp_path), GROUP)
    assert [s.name for s in store.sequences] == ["a"] and len(store) == 20
    assert len(collect_garbage(str(tmp_path), GROUP)) == 1
    assert len(open_store(str(tmp_path), GROUP)) == 20


def test_parallel_segments_adopted_in_one_commit(tmp_path: Path, provenance: Provenance) -> None:
    parts = []
    for i in range(2):
        segment = SegmentWriter(str(tmp_path), GROUP)
        segment.add(f"s{i}", i, 30.0, "h", make_sequence(17, seed=i))
        parts.append(pickle.loads(pickle.dumps(segment.close())))
    writer = StoreWriter(str(tmp_path), GROUP, provenance)
    for part in parts:
        writer.adopt(part)
    writer.commit()
    store = open_store(str(tmp_path), GROUP)
    assert [s.key for s in store.sequences] == [("s0", 0), ("s1", 1)]
    assert store.read("features", 17, 18)[0, 0] == 1.0


def test_nan_features_refused_naming_sequence(tmp_path: Path, provenance: Provenance) -> None:
    arrays = make_sequence(20, seed=1)
    arrays["features"][5, 7] = np.nan
    writer = StoreWriter(str(tmp_path), GROUP, provenance)
    with pytest.raises(StoreError, match=r"courtyard/person1: field features has NaN.*frame 5"):
        writer.add("courtyard", 1, 30.0, "h", arrays)
    arrays = make_sequence(20, seed=1)
    arrays["features"][0, 0] = 1e6
    with pytest.raises(StoreError, match="overflows float16"):
        writer.add("courtyard", 1, 30.0, "h", arrays)
    arrays = make_sequence(20, seed=1)
    del arrays["pose"]
    with pytest.raises(StoreError, match=r"missing arrays \['pose'\]"):
        writer.add("courtyard", 1, 30.0, "h", arrays)


def test_clear_errors_for_bad_access(tmp_path: Path, provenance: Provenance) -> None:
    with pytest.raises(StoreError, match="no store '3dpw/test/base'"):
        open_store(str(tmp_path), GROUP)
    write(tmp_path, provenance, {"a": 20})
    store = open_store(str(tmp_path), GROUP)
    with pytest.raises(StoreError, match=r"rows \[10, 25\) outside \[0, 20\)"):
        store.read("pose", 10, 25)
    with pytest.raises(StoreError, match="no array 'verts'"):
        store.read("verts", 0, 2)
    with pytest.raises(StoreError, match="unknown window protocol"):
        store.windows("train_stride2")
    shutil.rmtree(tmp_path / GROUP / "segments" / store.segments[0] / "bbox")
    with pytest.raises(StoreError, match=r"array .*/bbox is missing"):
        open_store(str(tmp_path), GROUP).read("bbox", 0, 2)
    with pytest.raises(StoreError, match=r"another provenance.*crop_scale"):
        StoreWriter(str(tmp_path), GROUP, Provenance(crop_scale=1.0))


def test_other_schema_version_is_refused(tmp_path: Path, provenance: Provenance) -> None:
    write(tmp_path, provenance, {"a": 20})
    group = zarr.open_group(str(tmp_path), path=GROUP, mode="a")
    pointer = dict(group.attrs[STORE_ATTR])
    pointer["schema_version"] = 99
    group.attrs.put({STORE_ATTR: pointer})
    with pytest.raises(StoreError, match="schema version 99"):
        open_store(str(tmp_path), GROUP)


def test_writes_are_shard_aligned(tmp_path: Path, provenance: Provenance, monkeypatch) -> None:
    writes: list[tuple[int, int]] = []
    monkeypatch.setattr("storage.writer.SHARD_ROWS", 32)
    monkeypatch.setattr("storage.writer.CHUNK_ROWS", 16)
    original = schema.ARRAYS  # the writer writes every array of the schema for each flush
    segment = SegmentWriter(str(tmp_path), GROUP)
    array = segment._arrays["features"]
    real_setitem = type(array).__setitem__

    def spy(self, key, value):  # records the row ranges written to `features`
        if self is array:
            writes.append((key.start, key.stop))
        return real_setitem(self, key, value)

    monkeypatch.setattr(type(array), "__setitem__", spy)
    for i, length in enumerate([20, 25, 30]):
        segment.add(f"s{i}", 0, 30.0, "h", make_sequence(length, seed=i))
    segment.close()
    # Every write starts on a shard boundary and covers whole shards, except the last one.
    assert writes == [(0, 32), (32, 64), (64, 75)]
    assert set(original) == set(segment._arrays)


def test_commit_without_sequences_is_a_clear_error(tmp_path: Path, provenance: Provenance) -> None:
    with pytest.raises(StoreError, match=f"{GROUP}: nothing to commit \\(no sequence added"):
        StoreWriter(str(tmp_path), GROUP, provenance).commit()
    assert store_groups(str(tmp_path)) == []
    write(tmp_path, provenance, {"a": 20, "b": 18})
    writer = StoreWriter(str(tmp_path), GROUP, provenance)
    writer.drop("a", 0)
    writer.drop("b", 0)
    with pytest.raises(StoreError, match="nothing to commit \\(every committed sequence"):
        writer.commit()
    # The previous version stays the readable one.
    assert [s.name for s in open_store(str(tmp_path), GROUP).sequences] == ["a", "b"]
