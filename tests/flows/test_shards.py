"""A dataset part's shards are separate task runs, and sharding never changes the store."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from flow_data import penn_sample
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    TaskRunFilter,
    TaskRunFilterName,
    TaskRunFilterStartTime,
)

from flows.build_features import build_features
from flows.parameters import DatasetSpec, Execution, FeatureRecipe, requests_for
from pipeline.build import build_dataset, extract_shard, plan_build
from storage.backend import location
from storage.reader import open_store
from storage.schema import ARRAYS
from storage.writer import read_pointer

RECIPE = FeatureRecipe(device="cpu", batch_size=8)
PENN_TRAIN = DatasetSpec(dataset="pennaction", splits=["train"])
GROUP = "pennaction/train/clean"


@pytest.mark.usefixtures("prefect_harness")
def test_two_shards_run_as_two_task_runs_and_equal_a_single_shard_build(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    data_root = penn_sample(tmp_path_factory)
    started = datetime.fromtimestamp(time.time() - 1, UTC)
    (outcome,) = build_features(
        datasets=[PENN_TRAIN],
        data_root=data_root,
        store=str(tmp_path / "sharded"),
        recipe=RECIPE,
        execution=Execution(shard_frames=1),
    )
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(
                name=TaskRunFilterName(like_="extract-pennaction-train-shard"),
                start_time=TaskRunFilterStartTime(after_=started),
            )
        )
    (request,) = requests_for([PENN_TRAIN], data_root, str(tmp_path / "whole"), RECIPE, None)
    whole = build_dataset(request)
    sharded, single = (
        open_store(str(tmp_path / "sharded"), GROUP),
        open_store(str(tmp_path / "whole"), GROUP),
    )

    assert outcome.result is not None and outcome.result.status == "built"
    assert outcome.result.extracted == 2 and whole.extracted == 2
    assert sorted(run.name for run in runs) == [
        "extract-pennaction-train-shard0",
        "extract-pennaction-train-shard1",
    ]
    assert len({run.id for run in runs}) == 2 and all(r.state.is_completed() for r in runs)
    assert [s.key for s in sharded.sequences] == [s.key for s in single.sequences]
    assert [s.content_hash for s in sharded.sequences] == [s.content_hash for s in single.sequences]
    assert len(sharded) == len(single) == 38
    for name in ARRAYS:
        np.testing.assert_array_equal(sharded.read(name, 0, 38), single.read(name, 0, 38))
    for protocol in ("train_stride1", "eval_tcmr"):
        np.testing.assert_array_equal(sharded.windows(protocol), single.windows(protocol))
    assert not (tmp_path / "sharded" / ".staging" / GROUP).exists() or not any(
        (tmp_path / "sharded" / ".staging" / GROUP).iterdir()
    )


def test_a_rerun_adopts_the_shards_an_interrupted_build_finished(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    data_root = penn_sample(tmp_path_factory)
    (request,) = requests_for([PENN_TRAIN], data_root, str(tmp_path), RECIPE, None)
    interrupted = plan_build(request, shard_frames=20)
    first = extract_shard(request, interrupted.shards[0])  # then the run dies

    rerun = build_dataset(request, shard_frames=20)
    pointer = read_pointer(location(str(tmp_path)), GROUP)

    assert len(interrupted.shards) == 2 and first.segment is not None
    assert pointer is not None and first.segment.segment_id in pointer["segments"]
    assert len(pointer["segments"]) == 2
    assert rerun.status == "built" and rerun.frames == 38 and rerun.added == 2
    assert not Path(interrupted.staging).exists()
