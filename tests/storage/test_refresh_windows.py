"""Window indexes after a refresh that removes and replaces sequences: rows must not shift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from store_samples import make_sequence

from storage.provenance import Provenance
from storage.reader import open_store
from storage.writer import WINDOW_PROTOCOLS, StoreWriter

GROUP = "3dpw/test/base"


def _sequence(length: int, seed: int) -> dict[str, np.ndarray]:
    arrays = make_sequence(length, seed=seed)
    arrays["valid"] = np.arange(length) % 5 != 2  # evaluation skips these rows
    return arrays


def test_windows_after_drop_and_replace_equal_a_fresh_store(tmp_path: Path) -> None:
    provenance = Provenance(code_version="t")
    writer = StoreWriter(str(tmp_path / "refreshed"), GROUP, provenance)
    for name, length, seed in (("a", 40, 1), ("b", 33, 2), ("c", 50, 3)):
        writer.add(name, 0, 30.0, f"h{seed}", _sequence(length, seed))
    writer.commit()
    refresh = StoreWriter(str(tmp_path / "refreshed"), GROUP, provenance)
    refresh.drop("a", 0)  # the first rows go: every later row moves up
    refresh.add("b", 0, 30.0, "h4", _sequence(21, 4))  # replaced, shorter, moves to the end
    refresh.add("d", 0, 30.0, "h5", _sequence(17, 5))
    refresh.commit()
    fresh = StoreWriter(str(tmp_path / "fresh"), GROUP, provenance)
    for name, length, seed in (("c", 50, 3), ("b", 21, 4), ("d", 17, 5)):
        fresh.add(name, 0, 30.0, f"h{seed}", _sequence(length, seed))
    fresh.commit()

    refreshed = open_store(str(tmp_path / "refreshed"), GROUP)
    expected = open_store(str(tmp_path / "fresh"), GROUP)

    assert [(s.name, s.first_row) for s in refreshed.sequences] == [
        ("c", 0), ("b", 50), ("d", 71),
    ]  # fmt: skip
    for protocol in WINDOW_PROTOCOLS:
        np.testing.assert_array_equal(
            refreshed.windows(protocol), expected.windows(protocol), err_msg=protocol
        )
    # Each window reads one sequence's frames: the features encode (seed, frame).
    for start in refreshed.windows("train_stride1"):
        seeds = refreshed.span("features", int(start), 16)[:, 0]
        assert len(set(seeds.tolist())) == 1
    rows = refreshed.windows("eval_tcmr")
    frames = refreshed.rows("frame_index", rows[:, 8])
    assert refreshed.rows("valid", rows.ravel()).all()
    assert len(frames) == 40 + 17  # the valid rows of c and b; d keeps 14 < 16: no window
