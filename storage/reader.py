"""Reading stores: one committed version, by row ranges or windows, in bounded memory.

`open_store(root, group)` resolves the group's pointer once; the returned `Store` keeps
reading that version even if a writer commits a newer one meanwhile. Rows are numbered
0..len-1 in sequence-table order, across segments. Arrays are opened lazily in each
process (a `Store` pickles to its location and pointer, so DataLoader workers reopen it)
and read through a small LRU cache of chunk-aligned blocks: windows drawn from the same
chunks (see `model.data`'s chunk-aware shuffling) decode each chunk once.
"""

from __future__ import annotations

import asyncio
import bisect
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.core.sync import sync

from storage.backend import Location, location
from storage.errors import StoreError
from storage.provenance import Provenance
from storage.schema import ARRAYS, CHUNK_ROWS
from storage.writer import WINDOW_PROTOCOLS, read_pointer, read_table

DEFAULT_CACHE_BYTES = 64 << 20


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
        self._blocks: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
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
                raise StoreError(f"store {self.where}: array {path} is missing") from error
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

    def read(self, name: str, lo: int, hi: int) -> np.ndarray:
        """Rows [lo, hi) of one array, read directly (for sequential scans)."""
        self._check_range(lo, hi)
        parts = [
            self._array(name, segment)[start : start + count]
            for segment, start, count in self._pieces(lo, hi)
        ]
        if not parts:
            return np.zeros((0, *ARRAYS[name].tail), dtype=ARRAYS[name].dtype)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def sequence_arrays(self, index: int) -> dict[str, np.ndarray]:
        """All arrays of one sequence (for copying and export)."""
        seq = self.sequences[index]
        return {name: self.read(name, seq.first_row, seq.first_row + seq.length) for name in ARRAYS}

    def _block(self, name: str, segment: int, block: int) -> np.ndarray:
        key = (name, segment, block)
        value = self._blocks.get(key)
        if value is not None:
            self._blocks.move_to_end(key)
            return value
        value = self._array(name, segment)[block * CHUNK_ROWS : (block + 1) * CHUNK_ROWS]
        self._remember(key, value)
        return value

    def _remember(self, key: tuple[str, int, int], value: np.ndarray) -> None:
        self._blocks[key] = value
        self._cached += value.nbytes
        while self._cached > self.cache_bytes and len(self._blocks) > 1:
            _, old = self._blocks.popitem(last=False)
            self._cached -= old.nbytes

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
        spec = ARRAYS.get(name)
        if spec is None:
            raise StoreError(f"store {self.where} has no array {name!r}; arrays: {list(ARRAYS)}")
        out = np.empty((len(rows), *spec.tail), dtype=spec.dtype)
        blocks = segrows // CHUNK_ROWS
        pairs = np.stack([segments, blocks], axis=1)
        for segment, block in np.unique(pairs, axis=0):
            mask = (segments == segment) & (blocks == block)
            data = self._block(name, int(segment), int(block))
            out[mask] = data[segrows[mask] - block * CHUNK_ROWS]
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
        self._prefetch(names, segment, range(first, last + 1))
        out = {}
        for name in names:
            if first == last:
                out[name] = self._block(name, segment, first)[offset : offset + count]
            else:
                parts = [self._block(name, segment, block) for block in range(first, last + 1)]
                out[name] = np.concatenate(parts)[offset : offset + count]
        return out

    def _prefetch(self, names: tuple[str, ...], segment: int, blocks: range) -> None:
        """Load the blocks not cached yet, all arrays at once, in zarr's event loop."""
        missing = [
            (name, block)
            for name in names
            for block in blocks
            if (name, segment, block) not in self._blocks
        ]
        if len(missing) < 2:
            return
        reads = [
            self._array(name, segment)._async_array.getitem(
                (slice(block * CHUNK_ROWS, (block + 1) * CHUNK_ROWS),)
            )
            for name, block in missing
        ]

        async def gather() -> list[Any]:
            return await asyncio.gather(*reads)

        for (name, block), value in zip(missing, sync(gather()), strict=True):
            self._remember((name, segment, block), np.asarray(value))

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


def content_hashes(
    root: str | Location, group: str, storage_options: dict[str, Any] | None = None
) -> dict[tuple[str, int], str]:
    """(name, person_id) -> content hash of the committed sequences; {} when no store yet."""
    loc = location(root, storage_options)
    pointer = read_pointer(loc, group.strip("/"))
    if pointer is None:
        return {}
    return open_store(loc, group).content_hashes()
