"""Reading stores: one committed version, by row ranges or windows, in bounded memory.

`open_store(root, group)` resolves the group's pointer once; the returned `Store` keeps
reading that version even if a writer commits a newer one meanwhile. Rows are numbered
0..len-1 in sequence-table order, across segments. Arrays are opened lazily in each
process (a `Store` pickles to its location and pointer, so DataLoader workers reopen it)
and read through a small LRU cache of chunk-aligned blocks, bounded in bytes: windows drawn
from the same chunks (see `model.data`'s chunk-aware shuffling) decode each chunk once.
Blocks of this store's own layout are fetched and decoded directly (`ChunkLayout`), all
missing ones of a window in one round trip; other layouts go through zarr's indexing.
"""

from __future__ import annotations

import asyncio
import bisect
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numcodecs.blosc
import numpy as np
import zarr
from zarr.abc.store import ByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec
from zarr.codecs.sharding import ShardingCodecIndexLocation
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

from storage.backend import Location, location
from storage.errors import StoreError
from storage.provenance import Provenance
from storage.schema import ARRAYS, CHUNK_ROWS, array_specs
from storage.writer import WINDOW_PROTOCOLS, read_pointer, read_table

DEFAULT_CACHE_BYTES = 64 << 20
SHARD_INDEX_CACHE = 4096
"""Shard indexes kept per process (about 1 KiB each)."""
BlockKey = tuple[str, int, int]
"""(array name, segment, chunk block); for shard indexes, (array name, segment, shard)."""
_EMPTY = 2**64 - 1
"""Shard index entry of a chunk that was never written (all fill value)."""


@dataclass(frozen=True)
class ChunkLayout:
    """Where the inner chunks of a sharded array lie, to fetch and decode one directly.

    zarr-python 3.1.6 spends about 1 ms of per-call work (indexer, codec pipeline, thread
    hops) on every read, more than decoding a 128-row chunk costs; training reads thousands
    of whole chunks, so they skip that pipeline when the array has the layout this store
    writes: shards of Blosc chunks, the shard index at the end with a CRC32C.
    """

    store: zarr.abc.store.Store
    local: Path | None
    """The folder of a local store: its files are read here, with no event loop round trip."""
    metadata: Any
    length: int
    chunk_shape: tuple[int, ...]
    per_shard: int
    dtype: np.dtype
    fill_value: Any
    where: str

    def shard_key(self, shard: int) -> str:
        coords = (shard,) + (0,) * (len(self.chunk_shape) - 1)
        return f"{self.where}/{self.metadata.encode_chunk_key(coords)}"

    def index_read(self, shard: int) -> ByteRead:
        """The read of one shard's index: its last 16 bytes per chunk + 4 of CRC32C."""
        return (self, self.shard_key(shard), -1, 16 * self.per_shard + 4)

    def parse_index(self, shard: int, data: np.ndarray | None) -> np.ndarray | None:
        """(offset, nbytes) per chunk of one shard; None when the shard was never written."""
        if data is None:
            return None
        size = 16 * self.per_shard + 4
        if len(data) != size or np.uint32(google_crc32c.value(data[:-4])).tobytes() != bytes(
            data[-4:]
        ):
            raise StoreError(
                f"shard {self.shard_key(shard)}: index checksum mismatch (corrupt or truncated)"
            )
        return np.frombuffer(data[:-4].tobytes(), dtype="<u8").reshape(self.per_shard, 2)

    def chunk_read(self, index: np.ndarray | None, block: int) -> ByteRead | None:
        """The read of chunk `block`'s compressed bytes; None when it holds only fill value."""
        if index is None:
            return None
        offset, nbytes = (int(v) for v in index[block % self.per_shard])
        if offset == _EMPTY:
            return None
        return (self, self.shard_key(block // self.per_shard), offset, nbytes)

    def decode(self, raw: np.ndarray | None, block: int) -> np.ndarray:
        """One chunk's rows as zarr returns them (native byte order, cut at the array end)."""
        if raw is None:
            out = np.full(self.chunk_shape, self.fill_value, dtype=self.dtype)
        else:
            out = np.empty(self.chunk_shape, dtype=self.dtype)
            numcodecs.blosc.decompress(raw, out)
        rows = min(self.chunk_shape[0], self.length - block * self.chunk_shape[0])
        return out[:rows].astype(self.dtype.newbyteorder("="), copy=False)


def _joined(blocks: list[np.ndarray], offset: int, count: int) -> np.ndarray:
    """Rows [offset, offset + count) of consecutive blocks, copying only those rows."""
    parts = []
    for block in blocks:
        parts.append(block[offset : offset + count])
        count -= len(parts[-1])
        offset = max(0, offset - len(block))
    return np.concatenate(parts)


ByteRead = tuple[ChunkLayout, str, int, int]
"""(layout, key, offset, nbytes); offset -1 reads the last nbytes of the object."""


def _read_file(path: Path, offset: int, nbytes: int) -> np.ndarray | None:
    try:
        with open(path, "rb") as file:
            file.seek(-nbytes if offset < 0 else offset, os.SEEK_END if offset < 0 else os.SEEK_SET)
            return np.frombuffer(file.read(nbytes), dtype=np.uint8)
    except FileNotFoundError:
        return None
    except OSError as error:  # a file shorter than its index: truncated
        raise StoreError(f"shard {path}: cannot read {nbytes} bytes ({error})") from error


def _request(read: ByteRead) -> ByteRequest:
    _, _, offset, nbytes = read
    return SuffixByteRequest(nbytes) if offset < 0 else RangeByteRequest(offset, offset + nbytes)


def read_bytes(reads: list[ByteRead]) -> list[np.ndarray | None]:
    """Byte ranges (None for a missing object): local files here, others concurrently."""
    out: list[np.ndarray | None] = [None] * len(reads)
    remote = []
    for i, (layout, key, offset, nbytes) in enumerate(reads):
        if layout.local is not None:
            out[i] = _read_file(layout.local / key, offset, nbytes)
        else:
            remote.append(i)

    async def gather() -> list[Any]:
        prototype = default_buffer_prototype()
        return await asyncio.gather(
            *(reads[i][0].store.get(reads[i][1], prototype, _request(reads[i])) for i in remote)
        )

    if remote:
        for i, buffer in zip(remote, sync(gather()), strict=True):
            out[i] = None if buffer is None else buffer.as_numpy_array()
    for (_, key, _, nbytes), data in zip(reads, out, strict=True):
        if data is not None and len(data) != nbytes:
            raise StoreError(f"shard {key}: read {len(data)} of {nbytes} bytes (truncated file)")
    return out


def chunk_layout(array: zarr.Array) -> ChunkLayout | None:
    """The direct-read layout of `array`, or None when it is not the one this store writes."""
    meta = array.metadata
    codecs = getattr(meta, "codecs", ())
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return None
    sharding = codecs[0]
    inner, index = sharding.codecs, sharding.index_codecs
    shard_shape = tuple(meta.chunk_grid.chunk_shape)  # type: ignore[union-attr]
    chunk_shape = tuple(sharding.chunk_shape)
    if (
        len(inner) != 2
        or not isinstance(inner[0], BytesCodec)
        or not isinstance(inner[1], BloscCodec)
        or len(index) != 2
        or not isinstance(index[0], BytesCodec)
        or not isinstance(index[1], Crc32cCodec)
        or sharding.index_location != ShardingCodecIndexLocation.end
        or shard_shape[1:] != tuple(array.shape[1:])
        or chunk_shape[1:] != tuple(array.shape[1:])
        or shard_shape[0] % chunk_shape[0]
    ):
        return None
    big = inner[0].endian is not None and inner[0].endian.value == "big"
    store = array.store_path.store
    return ChunkLayout(
        store=store,
        local=store.root if isinstance(store, LocalStore) else None,
        metadata=meta,
        length=array.shape[0],
        chunk_shape=chunk_shape,
        per_shard=shard_shape[0] // chunk_shape[0],
        dtype=array.dtype.newbyteorder(">" if big else "<"),
        fill_value=array.fill_value,
        where=array.store_path.path,
    )


@dataclass(frozen=True)
class SequenceRow:
    """One sequence of a store: rows [first_row, first_row + length)."""

    name: str
    person_id: int
    first_row: int
    length: int
    fps: float
    content_hash: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.person_id)


class Store:
    """A read-only view of one committed version of a store group."""

    def __init__(
        self,
        loc: Location,
        group: str,
        pointer: dict[str, Any],
        table: dict[str, list[Any]],
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.location = loc
        self.group = group
        self.pointer = pointer
        self._table = table
        self.cache_bytes = cache_bytes
        self.provenance = Provenance.from_dict(pointer["provenance"], f"{self.where} attributes")
        self.specs = array_specs(self.provenance.feature_dtype)
        """The array specs of this store (its `features` dtype is float16 or float32)."""
        lengths = np.asarray(table["length"], dtype=np.int64)
        self._firsts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self._firsts_list: list[int] = self._firsts.tolist()
        self.segments: list[str] = sorted(set(table["segment"]))
        seg_of = {segment: i for i, segment in enumerate(self.segments)}
        self._seq_segment = np.asarray([seg_of[s] for s in table["segment"]], dtype=np.int64)
        self._seq_segrow = np.asarray(table["segment_row"], dtype=np.int64)
        self.sequences = [
            SequenceRow(name, int(pid), int(first), int(length), float(fps), digest)
            for name, pid, first, length, fps, digest in zip(
                table["name"],
                table["person_id"],
                self._firsts[:-1],
                lengths,
                table["fps"],
                table["content_hash"],
                strict=True,
            )
        ]
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._arrays: dict[tuple[str, int], zarr.Array] = {}
        self._windows: dict[str, np.ndarray] = {}
        self._layouts: dict[tuple[str, int], ChunkLayout | None] = {}
        self._indexes: dict[BlockKey, np.ndarray | None] = {}
        self._blocks: OrderedDict[tuple[int, int], dict[str, np.ndarray]] = OrderedDict()
        self._cached = 0

    def __getstate__(self) -> dict[str, Any]:
        return {
            "loc": self.location,
            "group": self.group,
            "pointer": self.pointer,
            "table": self._table,
            "cache_bytes": self.cache_bytes,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["loc"], state["group"], state["pointer"], state["table"], state["cache_bytes"]
        )

    @property
    def where(self) -> str:
        return f"{self.location.root}/{self.group}"

    def __len__(self) -> int:
        return int(self._firsts[-1])

    @property
    def eval_keep_valid(self) -> bool:
        return bool(self.pointer["eval_keep_valid"])

    @property
    def cached_bytes(self) -> int:
        """Bytes of decoded chunk blocks held now (at most `cache_bytes`, or one block)."""
        return self._cached

    @property
    def array_names(self) -> tuple[str, ...]:
        return tuple(ARRAYS)

    def _array(self, name: str, segment: int) -> zarr.Array:
        if os.getpid() != self._pid:
            self._reset()
        if name not in ARRAYS:
            raise StoreError(f"store {self.where} has no array {name!r}; arrays: {list(ARRAYS)}")
        key = (name, segment)
        if key not in self._arrays:
            path = f"{self.group}/segments/{self.segments[segment]}/{name}"
            try:
                self._arrays[key] = zarr.open_array(
                    self.location.zarr_store(read_only=True), path=path, mode="r"
                )
            except FileNotFoundError as error:
                raise StoreError(
                    f"store {self.where}: array {path} is missing (if the group was compacted or "
                    f"garbage-collected after this reader opened commit {self.pointer['commit']}, "
                    "open the store again to read its current version)"
                ) from error
        return self._arrays[key]

    def _check_range(self, lo: int, hi: int) -> None:
        if not 0 <= lo <= hi <= len(self):
            raise StoreError(f"store {self.where}: rows [{lo}, {hi}) outside [0, {len(self)})")

    def _pieces(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """(segment, segment_row_lo, count) pieces covering rows [lo, hi)."""
        pieces: list[tuple[int, int, int]] = []
        seq = int(np.searchsorted(self._firsts, lo, side="right")) - 1
        row = lo
        while row < hi:
            end = min(hi, int(self._firsts[seq + 1]))
            segment = int(self._seq_segment[seq])
            segrow = int(self._seq_segrow[seq]) + row - int(self._firsts[seq])
            last = pieces[-1] if pieces else None
            if last and last[0] == segment and last[1] + last[2] == segrow:
                pieces[-1] = (segment, last[1], last[2] + end - row)
            else:
                pieces.append((segment, segrow, end - row))
            row, seq = end, seq + 1
        return pieces

    def _require(self, name: str, segment: int) -> None:
        """Raise if `segment` was deleted since this reader opened it.

        A deleted shard reads like a never-written one (all fill value), so without this a
        reader of a version that compaction has since removed would get zeros, not an error.
        """
        array = self._array(name, segment)
        if not sync(array.store_path.store.exists(f"{array.store_path.path}/zarr.json")):
            raise StoreError(
                f"store {self.where}: segment {self.segments[segment]} of commit "
                f"{self.pointer['commit']} was removed (the group was compacted or "
                "garbage-collected after this reader opened it); open the store again to read "
                "its current version"
            )

    def read(self, name: str, lo: int, hi: int) -> np.ndarray:
        """Rows [lo, hi) of one array, read directly (for sequential scans)."""
        self._check_range(lo, hi)
        pieces = self._pieces(lo, hi)
        parts = [
            self._array(name, segment)[start : start + count] for segment, start, count in pieces
        ]
        for segment in {segment for segment, _, _ in pieces}:
            self._require(name, segment)
        if not parts:
            return np.zeros((0, *self.specs[name].tail), dtype=self.specs[name].dtype)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def sequence_arrays(self, index: int) -> dict[str, np.ndarray]:
        """All arrays of one sequence (for copying and export)."""
        seq = self.sequences[index]
        return {name: self.read(name, seq.first_row, seq.first_row + seq.length) for name in ARRAYS}

    def _layout(self, name: str, segment: int) -> ChunkLayout | None:
        key = (name, segment)
        if key not in self._layouts:
            layout = chunk_layout(self._array(name, segment))
            ok = layout is not None and layout.chunk_shape[0] == CHUNK_ROWS
            self._layouts[key] = layout if ok else None
        return self._layouts[key]

    def _get_blocks(
        self, names: tuple[str, ...], pairs: list[tuple[int, int]]
    ) -> list[dict[str, np.ndarray]]:
        """The arrays `names` of chunk blocks (segment, block): cached, the rest loaded at once.

        The cache holds one entry per block (all arrays read from it so far), so a window
        costs one or two lookups whatever the number of arrays.
        """
        entries = []
        missing = []
        for pair in pairs:
            entry = self._blocks.get(pair)
            if entry is None:
                entry = self._blocks[pair] = {}
            else:
                self._blocks.move_to_end(pair)
            entries.append(entry)
            missing.extend((name, *pair) for name in names if name not in entry)
        if missing:
            for (name, segment, block), value in self._load(missing).items():
                entries[pairs.index((segment, block))][name] = value
                self._cached += value.nbytes
            while self._cached > self.cache_bytes and len(self._blocks) > 1:
                _, old = self._blocks.popitem(last=False)
                self._cached -= sum(value.nbytes for value in old.values())
        return entries

    def _load(self, keys: list[BlockKey]) -> dict[BlockKey, np.ndarray]:
        """Fetch blocks: this store's layout read and decoded directly, others through zarr."""
        layouts = {key: self._layout(key[0], key[1]) for key in dict.fromkeys(keys)}
        direct = {key: layout for key, layout in layouts.items() if layout is not None}
        shards = {
            (name, segment, block // layout.per_shard): layout
            for (name, segment, block), layout in direct.items()
        }
        wanted = [shard for shard in shards if shard not in self._indexes]
        found = read_bytes([shards[shard].index_read(shard[2]) for shard in wanted])
        for shard, data in zip(wanted, found, strict=True):
            if data is None:
                self._require(shard[0], shard[1])
            self._indexes[shard] = shards[shard].parse_index(shard[2], data)
        reads = {
            key: layout.chunk_read(
                self._indexes[(key[0], key[1], key[2] // layout.per_shard)], key[2]
            )
            for key, layout in direct.items()
        }
        present = [key for key, read in reads.items() if read is not None]
        fetched = read_bytes([read for read in reads.values() if read is not None])
        raw = dict(zip(present, fetched, strict=True))
        for name, segment, _ in [key for key, data in raw.items() if data is None]:
            self._require(name, segment)  # its shard index said the chunk was written
        out = {key: layout.decode(raw.get(key), key[2]) for key, layout in direct.items()}
        while len(self._indexes) > SHARD_INDEX_CACHE:
            self._indexes.pop(next(iter(self._indexes)))
        others = [key for key, layout in layouts.items() if layout is None]
        if others:

            async def gather() -> list[Any]:
                return await asyncio.gather(
                    *(
                        self._array(name, segment)._async_array.getitem(
                            (slice(block * CHUNK_ROWS, (block + 1) * CHUNK_ROWS),)
                        )
                        for name, segment, block in others
                    )
                )

            out.update(zip(others, map(np.asarray, sync(gather())), strict=True))
        return out

    def rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Gather arbitrary rows (e.g. one window) through the chunk-block cache."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise StoreError(
                f"store {self.where}: row {int(rows.max())} outside [0, {len(self)}) reading {name}"
            )
        if os.getpid() != self._pid:
            self._reset()
        seq = np.searchsorted(self._firsts, rows, side="right") - 1
        segrows = self._seq_segrow[seq] + rows - self._firsts[seq]
        segments = self._seq_segment[seq]
        spec = self.specs.get(name)
        if spec is None:
            raise StoreError(f"store {self.where} has no array {name!r}; arrays: {list(ARRAYS)}")
        out = np.empty((len(rows), *spec.tail), dtype=spec.dtype)
        blocks = segrows // CHUNK_ROWS
        pairs = [(int(s), int(b)) for s, b in np.unique(np.stack([segments, blocks], 1), axis=0)]
        for (segment, block), entry in zip(pairs, self._get_blocks((name,), pairs), strict=True):
            mask = (segments == segment) & (blocks == block)
            out[mask] = entry[name][segrows[mask] - block * CHUNK_ROWS]
        return out

    def span(self, name: str, start: int, count: int) -> np.ndarray:
        """Rows [start, start + count) of one array through the block cache."""
        return self.spans((name,), start, count)[name]

    def spans(self, names: tuple[str, ...], start: int, count: int) -> dict[str, np.ndarray]:
        """Rows [start, start + count) of several arrays: the fast path for one window.

        Missing blocks of all `names` are fetched concurrently in one round trip. Results
        may be read-only views of cached blocks: copy before changing them.
        """
        seq = bisect.bisect_right(self._firsts_list, start) - 1
        unknown = [name for name in names if name not in ARRAYS]
        if seq < 0 or start + count > self._firsts_list[seq + 1] or unknown:
            return {name: self.rows(name, np.arange(start, start + count)) for name in names}
        if os.getpid() != self._pid:
            self._reset()
        segment = int(self._seq_segment[seq])
        segrow = int(self._seq_segrow[seq]) + start - self._firsts_list[seq]
        first, last = segrow // CHUNK_ROWS, (segrow + count - 1) // CHUNK_ROWS
        offset = segrow - first * CHUNK_ROWS
        entries = self._get_blocks(names, [(segment, block) for block in range(first, last + 1)])
        if first == last:
            entry = entries[0]
            return {name: entry[name][offset : offset + count] for name in names}
        return {name: _joined([entry[name] for entry in entries], offset, count) for name in names}

    def windows(self, protocol: str) -> np.ndarray:
        """The committed window index: start rows (train_*) or row matrices [W, 16] (eval_*)."""
        if protocol not in WINDOW_PROTOCOLS:
            raise StoreError(
                f"store {self.where}: unknown window protocol {protocol!r}; "
                f"known: {list(WINDOW_PROTOCOLS)}"
            )
        if protocol not in self._windows:
            path = f"{self.group}/{self.pointer['index']}/{protocol}"
            try:
                array = zarr.open_array(
                    self.location.zarr_store(read_only=True), path=path, mode="r"
                )
            except FileNotFoundError as error:
                raise StoreError(f"store {self.where}: window index {path} is missing") from error
            self._windows[protocol] = np.asarray(array[:], dtype=np.int64)
        return self._windows[protocol]

    def content_hashes(self) -> dict[tuple[str, int], str]:
        return {seq.key: seq.content_hash for seq in self.sequences}


def open_store(
    root: str | Location,
    group: str,
    storage_options: dict[str, Any] | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> Store:
    """Open the committed version of `group` below `root` (a path or an fsspec URL)."""
    loc = location(root, storage_options)
    group = group.strip("/")
    pointer = read_pointer(loc, group)
    if pointer is None:
        known = loc.groups()
        raise StoreError(
            f"no store {group!r} under {loc.root} (stores there: {known or 'none'}); "
            "build or import it first"
        )
    return Store(loc, group, pointer, read_table(loc, group, pointer), cache_bytes)


def store_groups(root: str | Location, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Store groups below a root, e.g. ['3dpw/test/base', 'h36m/train/occ']."""
    return location(root, storage_options).groups()


def only_group(
    root: str | Location, prefix: str, storage_options: dict[str, Any] | None = None
) -> str:
    """The one store group below `root` whose name starts with `prefix` (e.g. `3dpw/test/`).

    For a command or flow whose group may be left out: with none or several such groups,
    a StoreError names those found and asks for the group by name.
    """
    loc = location(root, storage_options)
    groups = loc.groups()
    matching = [g for g in groups if g.startswith(prefix)]
    if len(matching) == 1:
        return matching[0]
    found = ", ".join(matching or groups) or "none"
    which = "several" if matching else "no"
    raise StoreError(f"{loc.root}: {which} {prefix}* store groups ({found}); name one with --group")


def content_hashes(
    root: str | Location, group: str, storage_options: dict[str, Any] | None = None
) -> dict[tuple[str, int], str]:
    """(name, person_id) -> content hash of the committed sequences; {} when no store yet."""
    loc = location(root, storage_options)
    pointer = read_pointer(loc, group.strip("/"))
    if pointer is None:
        return {}
    return open_store(loc, group).content_hashes()
