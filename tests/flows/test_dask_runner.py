"""Flows on an existing Dask cluster: GPU work routed by a worker resource, nothing left behind."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import DaskCluster, PrefectServer


def test_gpu_tasks_run_on_the_gpu_worker(
    prefect_server: PrefectServer, dask_cluster: DaskCluster
) -> None:
    import dask
    from prefect import flow, task
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_dask import DaskTaskRunner

    @task
    def where(shard: int) -> tuple[int, str]:
        from distributed import get_worker

        return shard, get_worker().address

    @flow(name="dask-routing", task_runner=DaskTaskRunner(address=dask_cluster.address))
    def routing() -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        with dask.annotate(resources={"GPU": 1}):
            gpu = where.map(range(4))
        anywhere = where.map(range(4, 8))
        return gpu.result(), anywhere.result()

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        gpu, anywhere = routing()

    assert [shard for shard, _ in gpu] == [0, 1, 2, 3]
    assert {address for _, address in gpu} == {dask_cluster.gpu_worker}
    assert [shard for shard, _ in anywhere] == [4, 5, 6, 7]
    assert {address for _, address in anywhere} <= {
        dask_cluster.gpu_worker,
        dask_cluster.cpu_worker,
    }
