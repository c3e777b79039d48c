"""A writer or compaction killed (SIGKILL) at each step: readers see the previous version whole,
and the next run goes on from there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from store_samples import make_sequence

from storage.maintenance import collect_garbage, compact
from storage.provenance import Provenance
from storage.reader import open_store
from storage.writer import StoreWriter

GROUP = "mpii3d/train/base"
REPO = Path(__file__).resolve().parents[2]

VICTIM = """
import os, signal, sys
import storage.maintenance, storage.writer
from storage.backend import Location
from storage.provenance import Provenance
from store_samples import make_sequence

root, step = sys.argv[1], sys.argv[2]

def die_after(owner, name, calls=1):
    original, seen = getattr(owner, name), []
    def wrapper(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(1)
        if len(seen) == calls:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    setattr(owner, name, wrapper)

if step == "compact":
    die_after(Location, "delete")  # after the new version, while deleting the old one
    storage.maintenance.compact(root, "mpii3d/train/base")
else:
    if step == "segment":
        die_after(storage.writer.SegmentWriter, "_flush")
    if step == "index":
        die_after(storage.writer.StoreWriter, "_write_index")  # under the commit lock
    writer = storage.writer.StoreWriter(root, "mpii3d/train/base", Provenance(code_version="t"))
    writer.add("S8_Seq2", 0, 25.0, "h8", make_sequence(40, seed=8))
    writer.drop("S1_Seq1", 0)
    writer.commit()
"""


def _kill_at(root: Path, step: str) -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{Path(__file__).parent}"}
    done = subprocess.run(
        [sys.executable, "-c", VICTIM, str(root), step], env=env, timeout=120, check=False
    )
    assert done.returncode == -signal.SIGKILL


def _base(root: Path) -> None:
    for index, (name, seed) in enumerate((("S1_Seq1", 1), ("S2_Seq1", 2))):
        writer = StoreWriter(str(root), GROUP, Provenance(code_version="t"))
        writer.add(name, 0, 25.0, f"h{seed}", make_sequence(20 + index, seed=seed))
        writer.commit()


@pytest.mark.parametrize("step", ["segment", "index"])
def test_a_writer_killed_before_its_swap_leaves_the_previous_version(
    tmp_path: Path, step: str
) -> None:
    _base(tmp_path)
    before = open_store(str(tmp_path), GROUP)

    _kill_at(tmp_path, step)

    store = open_store(str(tmp_path), GROUP)
    assert store.pointer == before.pointer
    np.testing.assert_array_equal(store.read("pose", 20, 41), make_sequence(21, seed=2)["pose"])
    assert len(store.windows("train_stride1")) == len(before.windows("train_stride1"))
    # The killed process held the commit lock: the next writer is not blocked by it.
    writer = StoreWriter(str(tmp_path), GROUP, Provenance(code_version="t"))
    writer.add("S8_Seq2", 0, 25.0, "h8", make_sequence(40, seed=8))
    writer.commit()
    assert [s.name for s in open_store(str(tmp_path), GROUP).sequences][-1] == "S8_Seq2"
    removed = collect_garbage(str(tmp_path), GROUP)
    killed_index = 1 if step == "index" else 0
    assert [r.split("/")[0] for r in removed].count("index") == 2 + killed_index  # + v1's, v2's
    assert len(open_store(str(tmp_path), GROUP)) == 81


def test_a_compaction_killed_while_deleting_leaves_a_readable_store(tmp_path: Path) -> None:
    _base(tmp_path)
    writer = StoreWriter(str(tmp_path), GROUP, Provenance(code_version="t"))
    writer.drop("S1_Seq1", 0)
    writer.commit()

    _kill_at(tmp_path, "compact")

    store = open_store(str(tmp_path), GROUP)
    assert store.pointer["commit"] == 4 and len(store.segments) == 1
    np.testing.assert_array_equal(store.read("pose", 0, 21), make_sequence(21, seed=2)["pose"])
    compacted = compact(str(tmp_path), GROUP)
    left = [p.name for p in (tmp_path / GROUP / "segments").iterdir() if p.is_dir()]
    assert left == compacted.segments
    np.testing.assert_array_equal(compacted.read("pose", 0, 21), make_sequence(21, seed=2)["pose"])
