"""The same API against a real S3-compatible server (moto) on loopback (`s3_options`)."""

from __future__ import annotations

import numpy as np
from store_samples import make_sequence

from storage.backend import Location
from storage.maintenance import collect_garbage, compact
from storage.provenance import Provenance
from storage.reader import content_hashes, open_store, store_groups
from storage.writer import SegmentWriter, StoreWriter


def test_write_read_refresh_compact_on_s3(s3_options: dict) -> None:
    root, group = "s3://tcmr-stores/features", "h36m/test/base"
    provenance = Provenance(code_version="remote")
    writer = StoreWriter(root, group, provenance, storage_options=s3_options)
    writer.add("S9_walk", 0, 25.0, "h1", make_sequence(20, seed=1))
    writer.add("S11_walk", 0, 25.0, "h2", make_sequence(17, seed=2))
    writer.commit()
    store = open_store(root, group, storage_options=s3_options)
    assert len(store) == 37 and store.provenance == provenance
    np.testing.assert_array_equal(store.read("pose", 20, 37), make_sequence(17, seed=2)["pose"])
    assert len(store.windows("eval_tcmr")) == 37
    assert store_groups(root, s3_options) == [group]
    writer = StoreWriter(root, group, provenance, storage_options=s3_options)
    writer.drop("S9_walk", 0)
    writer.commit()
    assert content_hashes(root, group, s3_options) == {("S11_walk", 0): "h2"}
    compacted = compact(root, group, storage_options=s3_options)
    assert len(compacted) == 17 and len(compacted.segments) == 1
    np.testing.assert_array_equal(
        compacted.rows("joints2d", np.arange(16)), make_sequence(17, seed=2)["joints2d"][:16]
    )


def test_listings_see_what_zarr_wrote_since_the_last_listing_in_this_process(
    s3_options: dict,
) -> None:
    """zarr writes through its own filesystem instance; a later listing must still see it."""
    root = Location("s3://tcmr-stores/listings", s3_options)
    provenance = Provenance(code_version="remote")
    seen = []
    for group in ("h36m/test/base", "3dpw/test/base"):
        writer = StoreWriter(root, group, provenance)
        writer.add("S9_walk", 0, 25.0, "h1", make_sequence(4, seed=1))
        writer.commit()
        seen.append(store_groups(root))
    assert collect_garbage(root, "3dpw/test/base") == []
    orphan = SegmentWriter(root, "3dpw/test/base")  # a killed build's uncommitted segment
    orphan.add("S11_walk", 0, 25.0, "h2", make_sequence(4, seed=2))
    segment = orphan.close()

    removed = collect_garbage(root, "3dpw/test/base")

    assert seen == [["h36m/test/base"], ["3dpw/test/base", "h36m/test/base"]]
    assert removed == [f"segments/{segment.segment_id}"]
