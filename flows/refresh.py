"""The `refresh` flow: bring existing store groups up to date with their changed sources.

Each group's sources are compared with what the store recorded; only new or changed
sequences (per-sequence content hash) are parsed into the store again and removed ones
are dropped, in a new committed version. Every group that changed is announced with a
`tcmr.features.updated` event, which the `train/scheduled` deployment's trigger matches.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.events import emit_event

from flows.build_features import finish, run_dataset_parts
from flows.parameters import (
    SAMPLE_ROOT,
    DatasetSpec,
    Execution,
    FeatureRecipe,
    stored_datasets,
)
from flows.tasks import PartOutcome
from pipeline.build import BuildResult
from storage.settings import get_settings

UPDATED_EVENT = "tcmr.features.updated"


def announce(result: BuildResult) -> str:
    """Emit the features-updated event of a changed group; return the event id."""
    event = emit_event(
        event=UPDATED_EVENT,
        resource={
            "prefect.resource.id": f"tcmr.dataset.{result.dataset}",
            "prefect.resource.name": result.dataset,
            "tcmr.group": f"{result.dataset}/{result.split}/{result.variant}",
        },
        payload={
            "store": result.store,
            "added": result.added,
            "replaced": result.replaced,
            "dropped": result.dropped,
            "sequences": result.sequences,
            "frames": result.frames,
        },
    )
    return str(event.id) if event is not None else ""


@flow(name="refresh", log_prints=True)
def refresh(
    datasets: list[DatasetSpec] | None = None,
    data_root: Path = SAMPLE_ROOT,
    store: str | None = None,
    recipe: FeatureRecipe = FeatureRecipe(),
    base_data: Path | None = None,
    execution: Execution = Execution(),
) -> list[PartOutcome]:
    """Refresh `datasets` (default: every group of the recipe's variant in the store)."""
    store = store or get_settings().store
    if datasets is None:
        datasets = stored_datasets(store, recipe.variant)
    logger = get_run_logger()
    if not datasets:
        logger.warning("no store groups to refresh under %s", store)
    outcomes = run_dataset_parts(datasets, data_root, store, recipe, base_data, execution)
    for outcome in outcomes:
        if outcome.result is not None and outcome.result.changed:
            event_id = announce(outcome.result)
            logger.info("%s: emitted %s (event %s)", outcome.result.store, UPDATED_EVENT, event_id)
    return finish(outcomes, "refresh")
