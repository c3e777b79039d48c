"""A build-features flow run refuses a group that another build is writing on the same store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from flow_data import copy_sample, penn_sample

from flows.build_features import build_features
from flows.parameters import DatasetSpec, FeatureRecipe
from storage.reader import open_store

pytestmark = pytest.mark.usefixtures("prefect_harness")

HOLDER = """
import sys, time
from pathlib import Path
from pipeline.build import BuildRequest, build_lock
request = BuildRequest("pennaction", "test", Path("."), sys.argv[1], Path("."))
with build_lock(request):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_flow_run_refuses_a_group_another_build_holds(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    data_root = copy_sample(penn_sample(tmp_path_factory), tmp_path / "data")
    store = tmp_path / "stores"
    run = {
        "datasets": [DatasetSpec(dataset="pennaction", splits=["test"])],
        "data_root": data_root,
        "store": str(store),
        "recipe": FeatureRecipe(device="cpu", batch_size=8),
    }
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        refused = build_features(**run, return_state=True)
    finally:
        holder.kill()
        holder.wait()

    assert refused.is_failed()
    assert "pennaction/test/clean: another build of this group is running" in refused.message
    assert not (store / "pennaction" / "test" / "clean").exists()
    build_features(**run)  # the lock went with its process
    assert len(open_store(str(store), "pennaction/test/clean")) == 18
