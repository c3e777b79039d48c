"""Evaluation windows of a store built from a raw release follow that dataset's protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.build import BuildRequest, build_dataset
from pipeline.sample.mpii3d import write_mpii3d
from storage.reader import open_store
from storage.writer import StoreWriter


def test_mpii3d_test_windows_keep_invalid_frames_for_masking(
    tmp_path: Path, checkpoint: Path
) -> None:
    """MPI-INF-3DHP evaluation keeps frames without valid_i (masked), as import-db's store does.

    The sample's TS1 holds a 19-frame segment with every fourth frame invalid: skipping those
    left 14 frames, fewer than 16, so the set was not evaluated at all.
    """
    truth = write_mpii3d(tmp_path / "raw", seed=0)
    request = BuildRequest(
        "mpii3d", "test", truth["dir"], str(tmp_path / "stores"), checkpoint, batch_size=8
    )
    build_dataset(request)
    store = open_store(request.store, request.group)
    valid = store.read("valid", 0, len(store))
    assert len(store) == 19 and not valid.all()

    windows = store.windows("eval_tcmr")

    assert store.eval_keep_valid is False
    np.testing.assert_array_equal(windows[:, 8], np.arange(19))  # one window per frame
    np.testing.assert_array_equal(windows[10], np.arange(2, 18))  # contiguous, no gap

    # A store built before the rule (invalid frames skipped) is re-indexed by the next build.
    old = StoreWriter(request.store, request.group, store.provenance, eval_keep_valid=True)
    old.commit()
    assert len(open_store(request.store, request.group).windows("eval_tcmr")) == 0

    again = build_dataset(request)

    assert again.status == "built" and again.extracted == 0
    assert len(open_store(request.store, request.group).windows("eval_tcmr")) == 19
