"""build-features on an existing Dask cluster: extraction routed to the GPU-resource worker."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flow_data import penn_sample

from flows.build_features import build_features
from flows.parameters import DatasetSpec, Execution, FeatureRecipe
from storage.reader import open_store

if TYPE_CHECKING:
    from conftest import DaskCluster, PrefectServer


@pytest.mark.slow
def test_build_features_on_a_dask_cluster(
    prefect_server: PrefectServer,
    dask_cluster: DaskCluster,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> None:
    from distributed import Client, get_task_stream
    from prefect.settings import PREFECT_API_URL, temporary_settings

    store = tmp_path / "stores"
    execution = Execution(dask_address=dask_cluster.address, gpu_resource="GPU")
    with (
        temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}),
        Client(dask_cluster.address) as client,
        get_task_stream(client) as stream,
    ):
        (outcome,) = build_features(
            datasets=[DatasetSpec(dataset="pennaction", splits=["test"])],
            data_root=penn_sample(tmp_path_factory),
            store=str(store),
            recipe=FeatureRecipe(device="cpu", batch_size=8),
            execution=execution,
        )
    builds = [t for t in stream.data if "extract_part_shard" in str(t["key"])]

    assert outcome.result is not None and outcome.result.status == "built"
    assert len(open_store(str(store), "pennaction/test/clean")) == 18
    assert builds, [t["key"] for t in stream.data]
    assert {t["worker"] for t in builds} == {dask_cluster.gpu_worker}
