"""build-features and refresh under the session Prefect harness, on Penn Action's sample.

Penn Action's test split is one 18-frame sequence per label file with `train == -1`, so a
test adds, changes or removes sequences by copying, editing or deleting label files.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from flow_data import copy_sample, penn_sample
from prefect.client.orchestration import get_client

from flows.build_features import build_features
from flows.parameters import DatasetSpec, FeatureRecipe, requests_for
from flows.refresh import UPDATED_EVENT, refresh
from pipeline.build import variant_name
from storage.backend import location
from storage.reader import open_store
from storage.writer import read_pointer

RECIPE = FeatureRecipe(device="cpu", batch_size=8)
PENN_TEST = DatasetSpec(dataset="pennaction", splits=["test"])
GROUP = "pennaction/test/clean"

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def data_root(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    return copy_sample(penn_sample(tmp_path_factory), tmp_path / "data")


def _commit(store: Path) -> int:
    pointer = read_pointer(location(str(store)), GROUP)
    assert pointer is not None
    return int(pointer["commit"])


def test_rerun_does_no_work_and_one_failing_dataset_loses_nothing(
    data_root: Path, tmp_path: Path
) -> None:
    store = tmp_path / "stores"
    missing = DatasetSpec(dataset="posetrack", splits=["train"], root=tmp_path / "nowhere")

    first = build_features(
        datasets=[PENN_TEST, missing],
        data_root=data_root,
        store=str(store),
        recipe=RECIPE,
        return_state=True,
    )
    built = open_store(str(store), GROUP)
    version = _commit(store)
    again = build_features(
        datasets=[PENN_TEST], data_root=data_root, store=str(store), recipe=RECIPE
    )
    (data_root / "pennaction" / "labels" / "0002.mat").write_bytes(b"not a MATLAB file")
    broken = build_features(
        datasets=[PENN_TEST],
        data_root=data_root,
        store=str(store),
        recipe=RECIPE,
        return_state=True,
    )

    assert first.is_failed()
    assert "posetrack/train/clean" in first.message and "nowhere" in first.message
    assert len(built.sequences) == 1 and len(built) == 18
    (outcome,) = again
    assert outcome.result is not None and outcome.result.status == "unchanged"
    assert outcome.result.parsed == 0 and outcome.result.extracted == 0
    assert broken.is_failed() and "0002.mat" in broken.message
    assert _commit(store) == version
    assert len(open_store(str(store), GROUP)) == 18


def test_feature_parameters_name_their_own_variant() -> None:
    assert variant_name(False) == "clean"
    assert variant_name(True) == "occ"
    assert variant_name(True, 1.1) == "occ-scale1.1"
    assert variant_name(False, 1.1) != variant_name(False)
    assert FeatureRecipe(occlusion=True, crop_scale=1.1).variant == "occ-scale1.1"
    assert FeatureRecipe(occlusion_seed=3, batch_size=4).variant == "clean"


def test_requests_leave_device_and_its_defaults_to_the_extracting_machine(tmp_path: Path) -> None:
    def request(**recipe) -> tuple[str, int | None, int | None]:
        (request,) = requests_for(
            [PENN_TEST], tmp_path, str(tmp_path), FeatureRecipe(**recipe), None
        )
        return request.device, request.batch_size, request.num_decode_threads

    # A flow process without a GPU must not turn `auto` into cpu for a Dask GPU worker.
    assert request() == ("auto", None, None)
    assert request(device="cuda:1") == ("cuda:1", None, None)
    assert request(device="cuda", batch_size=64, num_decode_threads=3) == ("cuda", 64, 3)


def _events(after: float) -> list[dict]:
    from datetime import UTC, datetime

    since = datetime.fromtimestamp(after, UTC).isoformat()
    body = {"filter": {"event": {"name": [UPDATED_EVENT]}, "occurred": {"since": since}}}
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/events/filter", json=body)
    return response.json()["events"]


def _wait_events(after: float, count: int) -> list[dict]:
    deadline = time.monotonic() + 30
    while ((found := _events(after)) and len(found) < count) or not found:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return found


def test_refresh_extracts_only_new_or_changed_and_drops_removed(
    data_root: Path, tmp_path: Path
) -> None:
    store = tmp_path / "stores"
    labels, frames = data_root / "pennaction" / "labels", data_root / "pennaction" / "frames"
    build_features(datasets=[PENN_TEST], data_root=data_root, store=str(store), recipe=RECIPE)
    started = time.time()

    # Change 0002 (one coordinate moves a pixel) and add 0003 (a copy under a new name).
    shutil.copy(labels / "0002.mat", labels / "0003.mat")
    shutil.copytree(frames / "0002", frames / "0003")
    mat = {k: v for k, v in scipy.io.loadmat(labels / "0002.mat").items() if not k.startswith("__")}
    mat["x"] = np.asarray(mat["x"], dtype=np.float64) + np.eye(*mat["x"].shape)
    scipy.io.savemat(labels / "0002.mat", mat)
    (changed,) = refresh(datasets=None, data_root=data_root, store=str(store), recipe=RECIPE)
    after_change = open_store(str(store), GROUP)
    # Remove 0003 again: nothing to extract, one sequence dropped.
    (labels / "0003.mat").unlink()
    (dropped,) = refresh(datasets=None, data_root=data_root, store=str(store), recipe=RECIPE)
    (idle,) = refresh(datasets=None, data_root=data_root, store=str(store), recipe=RECIPE)
    events = _wait_events(started, 2)

    assert changed.result is not None and dropped.result is not None and idle.result is not None
    assert (changed.result.added, changed.result.replaced, changed.result.dropped) == (1, 1, 0)
    assert changed.result.extracted == 2
    assert sorted(s.name for s in after_change.sequences) == ["0002", "0003"]
    assert (dropped.result.added, dropped.result.replaced, dropped.result.dropped) == (0, 0, 1)
    assert dropped.result.parsed == 1 and dropped.result.extracted == 0
    final = open_store(str(store), GROUP)
    assert [s.name for s in final.sequences] == ["0002"] and len(final) == 18
    assert idle.result.status == "unchanged" and not idle.result.changed
    assert len(events) == 2
    assert {e["resource"]["prefect.resource.id"] for e in events} == {"tcmr.dataset.pennaction"}
    assert sorted(e["payload"]["dropped"] for e in events) == [0, 1]
