"""Run artifacts: pure builders, and the real artifacts of a flow run under the harness."""

from __future__ import annotations

import json

from prefect import flow

from flows.artifacts import (
    DatasetSummary,
    artifact_key,
    publish_run_artifacts,
    summary_markdown,
    summary_rows,
)

BUILT = DatasetSummary(
    dataset="3dpw",
    split="train",
    variant="occ",
    status="built",
    sequences=3,
    frames=480,
    windows=435,
    skipped={"shorter than 16 frames": 2, "no visible joints": 1},
    seconds=12.0,
    store="data/stores/3dpw/train/occ",
)
UNCHANGED = DatasetSummary("insta", "train", "plain", "unchanged", sequences=4, frames=80)
FAILED = DatasetSummary(
    "h36m", "train", "plain", "failed", message="annotations/x.json: field 'R' | missing"
)


def test_rows_carry_counts_skips_and_speed() -> None:
    first, second = summary_rows([BUILT, UNCHANGED])

    assert first["skipped"] == 3
    assert first["skip reasons"] == "1 no visible joints; 2 shorter than 16 frames"
    assert first["frames/s"] == 40.0
    assert first["store"] == "data/stores/3dpw/train/occ"
    assert second["frames/s"] == 0.0 and second["skipped"] == 0


def test_markdown_headline_table_failures_and_skips() -> None:
    text = summary_markdown([BUILT, UNCHANGED, FAILED], flow="build-features")
    lines = text.splitlines()

    assert lines[0] == "# build-features: 1 built, 1 unchanged, 1 failed"
    assert lines[2].startswith("| dataset | split | variant | status |")
    table = [line for line in lines if line.startswith("| 3dpw")]
    assert len(table) == 1 and "| 480 | 435 | 3 |" in table[0]
    assert "560 frames processed in 12.0 s (46.7 frames/s)." in lines
    assert "- **h36m/train/plain**: annotations/x.json: field 'R' \\| missing" in lines
    assert "- **3dpw/train/occ**: 1 no visible joints; 2 shorter than 16 frames" in lines
    assert summary_markdown([], flow="refresh") == "# refresh: nothing to do\n"


def test_artifact_keys_are_valid() -> None:
    assert artifact_key("build-features", "datasets") == "build-features-datasets"
    assert artifact_key("Build_Features ", "summary") == "build-features-summary"


def test_a_flow_run_publishes_both_artifacts(prefect_harness: None) -> None:
    from prefect.artifacts import Artifact

    @flow(name="artifact-check")
    def run() -> str:
        from prefect.runtime import flow_run

        publish_run_artifacts([BUILT, FAILED], flow="artifact-check")
        return str(flow_run.id)

    run_id = run()
    table = Artifact.get("artifact-check-datasets")
    markdown = Artifact.get("artifact-check-summary")

    assert table is not None and markdown is not None
    assert str(table.flow_run_id) == run_id == str(markdown.flow_run_id)
    assert table.type == "table" and markdown.type == "markdown"
    data = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert data == summary_rows([BUILT, FAILED])
    assert markdown.data == summary_markdown([BUILT, FAILED], flow="artifact-check")
