"""Tasks shared by the feature flows, and the subflow that maps them over dataset parts.

Per part: `plan_part` (parse and stage) -> `extract_part_shard` mapped over the planned
shards (one segment each; the GPU-resource worker when scaled out) -> `finalize_part` (one
atomic commit). Tasks take and return small values (paths, plans, segment descriptions,
summaries), never feature arrays; the work is `pipeline.build` and `pipeline.catalog`. The
subflow picks its task runner per call, so a flow parameter can send the work to Dask.
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
from pipeline.build import (
    BuildPlan,
    BuildRequest,
    BuildResult,
    Shard,
    ShardResult,
    build_lock,
    extract_shard,
    finalize_build,
    plan_build,
)
from storage.errors import StoreError, TcmrError
from storage.schema import SHARD_ROWS


def _retry_unless_user_error(task: Task[..., Any], run: TaskRun, state: State[Any]) -> bool:
    """Retry transient failures (network, I/O); a bad file or field fails at once."""
    return not isinstance(state.result(raise_on_failure=False), TcmrError)


# Planning and extraction: one retry after a transient failure, none after a user error.
_RETRY_ONCE: dict[str, Any] = {
    "retries": 1,
    "retry_delay_seconds": 10,
    "retry_condition_fn": _retry_unless_user_error,
}


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


@task(task_run_name="plan-{request.dataset}-{request.split}", **_RETRY_ONCE)
def plan_part(request: BuildRequest, shard_frames: int) -> BuildPlan:
    """Parse one part's changed sources and stage what needs extraction, in shards."""
    plan = plan_build(request, shard_frames)
    get_run_logger().info(
        "%s: %s, %d parsed, %d shards (%d frames) to extract, %d to drop",
        plan.result.store,
        plan.result.status,
        plan.result.parsed,
        len(plan.shards),
        sum(shard.frames for shard in plan.shards),
        len(plan.drop),
    )
    return plan


@task(task_run_name="extract-{request.dataset}-{request.split}-shard{shard.index}", **_RETRY_ONCE)
def extract_part_shard(request: BuildRequest, shard: Shard) -> ShardResult:
    """Extract one shard's staged sequences into its own segment (not yet committed)."""
    return extract_shard(request, shard)


@task(task_run_name="finalize-{plan.request.dataset}-{plan.request.split}")
def finalize_part(plan: BuildPlan, shards: list[ShardResult]) -> BuildResult:
    """Commit the shards' segments and the drops as one version; log what changed."""
    result = finalize_build(plan, shards)
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


def _first_failure(futures: Sequence[PrefectFuture[Any]]) -> str:
    """The first failure among `futures` (all are waited for), else ''."""
    errors = [_failure(future) for future in futures]
    return next((error for error in errors if error), "")


@flow(name="build-parts")
def build_parts(
    requests: list[BuildRequest],
    downloads: dict[str, dict[str, Any]],
    gpu_resource: str | None,
    shard_frames: int = SHARD_ROWS,
) -> list[PartOutcome]:
    """Download what has links, then plan, extract and commit every part.

    Every part's shards run as their own task runs (on the GPU-resource worker when one is
    named); one failed download, plan, shard or commit fails its part only. This process
    holds each part's `build_lock` throughout, so a part another build of the same local
    store is writing fails at once instead of racing it.
    """
    with contextlib.ExitStack() as held:
        busy: dict[int, str] = {}
        for i, request in enumerate(requests):
            try:
                held.enter_context(build_lock(request))
            except StoreError as error:
                busy[i] = str(error)
        return _build_locked_parts(requests, downloads, gpu_resource, shard_frames, busy)


def _build_locked_parts(
    requests: list[BuildRequest],
    downloads: dict[str, dict[str, Any]],
    gpu_resource: str | None,
    shard_frames: int,
    busy: dict[int, str],
) -> list[PartOutcome]:
    """`build_parts`' work, in its flow run; the parts in `busy` fail with that error."""
    roots = {r.dataset: r.root for r in requests}
    fetched = {
        dataset: download_dataset.submit(dataset, roots[dataset], urls)
        for dataset, urls in downloads.items()
    }
    failed_downloads = {dataset: _failure(future) for dataset, future in fetched.items()}
    errors: dict[int, str] = {}
    plans: dict[int, PrefectFuture[BuildPlan]] = {}
    for i, request in enumerate(requests):
        error = failed_downloads.get(request.dataset, "")
        if i in busy:
            errors[i] = busy[i]
        elif error:
            errors[i] = f"download failed: {error}"
        else:
            plans[i] = plan_part.submit(request, shard_frames)
    annotate = contextlib.nullcontext()
    if gpu_resource:
        import dask

        annotate = dask.annotate(resources={gpu_resource: 1})
    shards: dict[int, list[PrefectFuture[ShardResult]]] = {}
    for i, future in plans.items():
        errors[i] = _failure(future)
        if not errors[i]:
            with annotate:
                shards[i] = [
                    extract_part_shard.submit(requests[i], shard)
                    for shard in future.result().shards
                ]
    finals: dict[int, PrefectFuture[BuildResult]] = {}
    for i, futures in shards.items():
        errors[i] = _first_failure(futures)
        if not errors[i]:  # a failed part keeps its finished shards for the rerun
            finals[i] = finalize_part.submit(
                plans[i].result(), [future.result() for future in futures]
            )
    outcomes: list[PartOutcome] = []
    for i, request in enumerate(requests):
        if i in finals:
            errors[i] = _failure(finals[i])
        result = finals[i].result() if i in finals and not errors[i] else None
        outcomes.append(PartOutcome(request, result, errors.get(i, "")))
    logger = get_run_logger()
    for outcome in outcomes:
        if outcome.error:
            logger.error("%s failed: %s", outcome.request.group, outcome.error)
    return outcomes


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
    downloaded = {k: dict(v) for k, v in downloads.items()}
    return subflow(list(requests), downloaded, gpu, execution.shard_frames)


def fail_if_any(outcomes: Sequence[PartOutcome], flow_name: str) -> None:
    """Fail the run (after its artifacts are out) naming every failed part and its reason."""
    failed = [o for o in outcomes if o.error]
    if failed:
        reasons = "; ".join(f"{o.request.group}: {o.error}" for o in failed)
        raise TcmrError(
            f"{flow_name}: {len(failed)} of {len(outcomes)} dataset parts failed "
            f"(their stores keep the previous version): {reasons}"
        )
