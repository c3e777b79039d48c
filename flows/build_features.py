"""The `build-features` flow: datasets in their release formats -> Zarr feature stores.

Per dataset part: download (when links are given) -> parse and stage what the store lacks
-> extract it shard by shard (one task and one segment per shard) -> one commit with window
indexes -> per-run table and markdown artifacts. Running it again with nothing changed
parses and extracts nothing; one part failing leaves the other parts' stores committed and
its own store at its previous version.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.artifacts import publish_run_artifacts
from flows.parameters import (
    SAMPLE_DATASETS,
    SAMPLE_ROOT,
    DatasetSpec,
    Execution,
    FeatureRecipe,
    requests_for,
)
from flows.tasks import PartOutcome, fail_if_any, run_parts


def run_dataset_parts(
    datasets: list[DatasetSpec],
    data_root: Path,
    store: str | None,
    recipe: FeatureRecipe,
    base_data: Path | None,
    execution: Execution,
) -> list[PartOutcome]:
    """Run every part of `datasets` with one recipe, downloading first where links are given."""
    requests = requests_for(datasets, data_root, store, recipe, base_data)
    downloads = {spec.dataset: spec.urls for spec in datasets if spec.urls}
    return run_parts(requests, downloads, execution)


def finish(outcomes: list[PartOutcome], flow_name: str) -> list[PartOutcome]:
    """Publish the run's table and markdown artifacts, then fail the run if any part failed."""
    publish_run_artifacts([o.summary() for o in outcomes], flow=flow_name)
    fail_if_any(outcomes, flow_name)
    return outcomes


@flow(name="build-features", log_prints=True)
def build_features(
    datasets: list[DatasetSpec] = SAMPLE_DATASETS,
    data_root: Path = SAMPLE_ROOT,
    store: str | None = None,
    recipe: FeatureRecipe = FeatureRecipe(),
    base_data: Path | None = None,
    execution: Execution = Execution(),
) -> list[PartOutcome]:
    """Build the feature store groups of `datasets` (each split) with one feature recipe.

    `store` defaults to the `store` setting; `base_data` to `<data_root>/base_data` when
    present (the sample), else the `base_data` setting.
    """
    outcomes = run_dataset_parts(datasets, data_root, store, recipe, base_data, execution)
    return finish(outcomes, "build-features")
