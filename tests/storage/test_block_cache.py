"""The reader's direct chunk path and block cache: same data as zarr, bounded in bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from store_samples import make_sequence

from storage.errors import StoreError
from storage.provenance import Provenance
from storage.reader import Store, chunk_layout, open_store
from storage.schema import ARRAYS
from storage.writer import StoreWriter

GROUP = "h36m/train/base"
CHUNK, SHARD = 16, 64


@pytest.fixture
def store_root(tmp_path: Path, provenance: Provenance, monkeypatch) -> Path:
    """Two segments, ragged sequence ends, and a shard whose pose is all fill value."""
    monkeypatch.setattr("storage.writer.SHARD_ROWS", SHARD)
    monkeypatch.setattr("storage.writer.CHUNK_ROWS", CHUNK)
    monkeypatch.setattr("storage.reader.CHUNK_ROWS", CHUNK)
    for seeds in ((1, 2), (3,)):
        writer = StoreWriter(str(tmp_path), GROUP, provenance, mode="append")
        for seed in seeds:
            arrays = make_sequence(70 + 13 * seed, seed)
            if seed == 1:
                arrays["pose"][:] = 0.0  # never written: zarr skips chunks of fill value only
            writer.add(f"seq{seed}", 0, 25.0, f"hash{seed}", arrays)
        writer.commit()
    return tmp_path


def zarr_rows(store: Store, name: str, start: int, count: int) -> np.ndarray:
    """The same rows through zarr's own indexing (`Store.read` slices zarr arrays)."""
    return store.read(name, start, start + count)


def test_direct_reads_equal_zarr_reads(store_root: Path) -> None:
    store = open_store(str(store_root), GROUP)
    assert len(store.segments) == 2
    for name in ARRAYS:
        assert chunk_layout(store._array(name, 0)) is not None, name
    starts = [int(s) for s in store.windows("train_stride1")]
    assert len(starts) > 100
    for start in starts:
        window = store.spans(tuple(ARRAYS), start, 16)
        for name, value in window.items():
            expected = zarr_rows(store, name, start, 16)
            assert value.dtype == expected.dtype and value.shape == expected.shape, name
            np.testing.assert_array_equal(value, expected, err_msg=f"{name} at {start}")
    rows = np.random.default_rng(0).integers(0, len(store), 40)
    for name in ARRAYS:
        expected = np.stack([zarr_rows(store, name, int(r), 1)[0] for r in rows])
        np.testing.assert_array_equal(store.rows(name, rows), expected, err_msg=name)
    assert not store.read("pose", 0, 83).any()
    np.testing.assert_array_equal(store.span("pose", 83, 16), make_sequence(96, 2)["pose"][:16])


def test_cache_is_bounded_in_bytes_and_decodes_each_block_once(
    store_root: Path, monkeypatch
) -> None:
    block_bytes = sum(
        CHUNK * np.prod(s.tail, dtype=int) * s.dtype.itemsize for s in ARRAYS.values()
    )
    store = open_store(str(store_root), GROUP, cache_bytes=int(3 * block_bytes))
    loaded: list[tuple[str, int, int]] = []
    load = Store._load

    def counting(self: Store, keys: list[tuple[str, int, int]]) -> dict:
        loaded.extend(keys)
        return load(self, keys)

    monkeypatch.setattr(Store, "_load", counting)
    names = tuple(ARRAYS)
    for start in store.windows("train_stride1"):  # in order: chunk by chunk
        store.spans(names, int(start), 16)
        assert store.cached_bytes <= store.cache_bytes
        held = [a.nbytes for entry in store._blocks.values() for a in entry.values()]
        assert store.cached_bytes == sum(held)
    assert len(loaded) == len(set(loaded))  # each chunk decoded once while it was needed
    blocks = {key[1:] for key in loaded}
    assert len(loaded) == len(names) * len(blocks)
    # A second pass in reverse order gives the same windows from a cold, tiny cache.
    small = open_store(str(store_root), GROUP, cache_bytes=1)
    for start in store.windows("train_stride1")[::-7]:
        a, b = small.spans(names, int(start), 16), store.spans(names, int(start), 16)
        for name in names:
            np.testing.assert_array_equal(a[name], b[name])
        assert len(small._blocks) <= 1


def test_corrupt_or_truncated_shard_names_the_file(store_root: Path) -> None:
    index_bytes = (SHARD // CHUNK) * 16 + 4  # (offset, nbytes) uint64 per chunk + CRC32C
    for shard in (store_root / GROUP / "segments").glob("*/bbox/c/0/0"):
        data = bytearray(shard.read_bytes())
        data[-10] ^= 0xFF
        shard.write_bytes(bytes(data))
    for shard in (store_root / GROUP / "segments").glob("*/pose/c/2/0"):
        data = shard.read_bytes()
        shard.write_bytes(data[:10] + data[-index_bytes:])  # valid index, chunks cut off
    store = open_store(str(store_root), GROUP)
    with pytest.raises(StoreError, match=r"bbox/c/0/0: index checksum mismatch"):
        store.rows("bbox", np.array([0]))
    with pytest.raises(StoreError, match=r"pose/c/2/0: read \d+ of \d+ bytes \(truncated"):
        store.rows("pose", np.array([150]))


def test_other_layouts_fall_back_to_zarr(tmp_path: Path) -> None:
    plain = zarr.create_array(tmp_path / "plain", shape=(40, 4), chunks=(16, 4), dtype="f4")
    assert chunk_layout(plain) is None
    sharded = zarr.create_array(
        tmp_path / "gzip", shape=(40, 4), chunks=(16, 4), shards=(32, 4), dtype="f4",
        compressors=zarr.codecs.GzipCodec(),
    )  # fmt: skip
    assert chunk_layout(sharded) is None
