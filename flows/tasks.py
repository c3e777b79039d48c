"""Tasks shared by the feature flows, and the subflow that maps them over dataset parts.

Tasks take and return small values (paths, requests, result summaries), never arrays; the
work is `pipeline.build.build_dataset` and `pipeline.catalog.fetch_sources`. The subflow
picks its task runner per call, so a flow parameter can send the work to a Dask cluster.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import Task, flow, get_run_logger, task
from prefect.client.schemas.objects import TaskRun
from prefect.futures import PrefectFuture
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from flows.artifacts import DatasetSummary
from flows.parameters import Execution
from pipeline.build import BuildRequest, BuildResult, build_dataset
from storage.errors import TcmrError


def _retry_unless_user_error(task: Task[..., Any], run: TaskRun, state: State[Any]) -> bool:
    """Retry transient failures (network, I/O); a bad file or field fails at once."""
    return not isinstance(state.result(raise_on_failure=False), TcmrError)


@task(
    task_run_name="download-{dataset}",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=_retry_unless_user_error,
)
def download_dataset(dataset: str, root: Path, urls: Mapping[str, Any]) -> int:
    """Fetch (resumable, verified) and unpack a dataset's linked files under `root`."""
    from pipeline.catalog import fetch_sources, resolve_sources

    sources = resolve_sources(dataset, dict(urls))
    files = fetch_sources(sources, Path(root), progress=False)
    get_run_logger().info(
        "%s: %d sources verified, %d files under %s", dataset, len(sources), len(files), root
    )
    return len(files)


@task(
    task_run_name="build-{request.dataset}-{request.split}",
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=_retry_unless_user_error,
)
def build_part(request: BuildRequest) -> BuildResult:
    """Parse, extract and commit one (dataset, split, variant) group; skip it if unchanged."""
    result = build_dataset(request)
    get_run_logger().info(
        "%s: %s, %d sequences (%d parsed, %d extracted; +%d ~%d -%d), %d frames, %d windows",
        result.store,
        result.status,
        result.sequences,
        result.parsed,
        result.extracted,
        result.added,
        result.replaced,
        result.dropped,
        result.frames,
        result.windows,
    )
    return result


@dataclass(frozen=True)
class PartOutcome:
    """A dataset part's result, or why it failed."""

    request: BuildRequest
    result: BuildResult | None
    error: str = ""

    def summary(self) -> DatasetSummary:
        r, res = self.request, self.result
        if res is None:
            return DatasetSummary(r.dataset, r.split, r.variant, "failed", message=self.error)
        return DatasetSummary(
            res.dataset,
            res.split,
            res.variant,
            res.status,
            sequences=res.sequences,
            frames=res.frames,
            windows=res.windows,
            skipped=res.skipped,
            seconds=res.seconds,
            store=res.store,
        )


def _failure(future: PrefectFuture[Any]) -> str:
    """The exception text of a finished future that did not complete, else ''."""
    future.wait()
    if future.state.is_completed():
        return ""
    error = future.result(raise_on_failure=False)
    return f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)


@flow(name="build-parts")
def build_parts(
    requests: list[BuildRequest], downloads: dict[str, dict[str, Any]], gpu_resource: str | None
) -> list[PartOutcome]:
    """Download what has links, then build every part; one failure never loses the others."""
    roots = {r.dataset: r.root for r in requests}
    fetched = {
        dataset: download_dataset.submit(dataset, roots[dataset], urls)
        for dataset, urls in downloads.items()
    }
    failed_downloads = {dataset: _failure(future) for dataset, future in fetched.items()}
    outcomes: dict[int, PartOutcome] = {}
    futures: dict[int, PrefectFuture[BuildResult]] = {}
    annotate = contextlib.nullcontext()
    if gpu_resource:
        import dask

        annotate = dask.annotate(resources={gpu_resource: 1})
    with annotate:
        for i, request in enumerate(requests):
            error = failed_downloads.get(request.dataset, "")
            if error:
                outcomes[i] = PartOutcome(request, None, f"download failed: {error}")
            else:
                futures[i] = build_part.submit(request)
    for i, future in futures.items():
        error = _failure(future)
        outcomes[i] = PartOutcome(requests[i], None if error else future.result(), error)
    logger = get_run_logger()
    for outcome in outcomes.values():
        if outcome.error:
            logger.error("%s failed: %s", outcome.request.group, outcome.error)
    return [outcomes[i] for i in range(len(requests))]


def run_parts(
    requests: Sequence[BuildRequest],
    downloads: Mapping[str, Mapping[str, Any]],
    execution: Execution,
) -> list[PartOutcome]:
    """Run `build_parts` on local threads or, given an address, on an existing Dask cluster."""
    if execution.dask_address:
        from prefect_dask import DaskTaskRunner

        runner: Any = DaskTaskRunner(address=execution.dask_address)
    else:
        runner = ThreadPoolTaskRunner(max_workers=execution.max_workers)
    subflow = build_parts.with_options(task_runner=runner)
    gpu = execution.gpu_resource if execution.dask_address else None
    return subflow(list(requests), {k: dict(v) for k, v in downloads.items()}, gpu)


def fail_if_any(outcomes: Sequence[PartOutcome], flow_name: str) -> None:
    """Fail the run (after its artifacts are out) naming every failed part and its reason."""
    failed = [o for o in outcomes if o.error]
    if failed:
        reasons = "; ".join(f"{o.request.group}: {o.error}" for o in failed)
        raise TcmrError(
            f"{flow_name}: {len(failed)} of {len(outcomes)} dataset parts failed "
            f"(their stores keep the previous version): {reasons}"
        )
