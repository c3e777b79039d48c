"""The loader benchmark measures training's loader: its workers' memory and its in-RAM limit."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.loader import SharedArrays, build_store, run_mode
from model.data import WINDOW_ARRAYS, WindowDataset
from storage.reader import open_store


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 600-frame sequences in the benchmark's store group."""
    root = tmp_path_factory.mktemp("bench_loader")
    build_store(root / "store", 1200)
    return root


def test_store_peak_rss_counts_the_forkserver_workers(workdir: Path) -> None:
    result = run_mode("store", workdir, batches=2, workers=2)
    # main, the forkserver, two workers (and the forkserver's resource tracker)
    assert result["processes"] >= 4
    # the forkserver and each worker hold torch: far above a bare interpreter each; neither
    # is a child this process reaps, so RUSAGE_CHILDREN read 0 for all of them
    assert result["peak_rss_others_mb"] > 3 * 100
    assert result["peak_rss_total_mb"] == pytest.approx(
        result["peak_rss_main_mb"] + result["peak_rss_others_mb"]
    )
    assert result["windows_per_s"] > 0
    assert result["frames"] == 1200


def test_in_ram_source_gives_the_store_samples_and_pickles_without_its_arrays(
    workdir: Path, tmp_path: Path
) -> None:
    store = open_store(str(workdir / "store"), "bench/train/base")
    source = SharedArrays(store, tmp_path, WINDOW_ARRAYS)
    clone = pickle.loads(pickle.dumps(source))
    # a worker gets the file names, not the 1200 x ~5.8 kB of rows
    assert len(pickle.dumps(source)) < source.nbytes / 100
    from_store, from_ram = WindowDataset(store), WindowDataset(clone)
    assert len(from_ram) == len(from_store)
    for index in (0, 584, len(from_store) - 1):
        expected, got = from_store[index], from_ram[index]
        assert expected.keys() == got.keys()
        for key in expected:
            assert torch.equal(expected[key], got[key]), key
    assert np.array_equal(clone.arrays["features"], store.read("features", 0, len(store)))
