"""The `evaluate` flow: one checkpoint on one store group with the official protocol."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.artifacts import artifact_key


@flow(name="evaluate", log_prints=True)
def evaluate(
    checkpoint: Path = Path("runs/train/best.pt"),
    group: str | None = None,
    store: str | None = None,
    out_dir: Path = Path("runs/evaluate"),
    protocol: str = "tcmr",
    filter_name: str = "none",
    device: str | None = None,
) -> dict[str, str]:
    """Evaluate `checkpoint` (ours or official) on `group` (default: the store's only
    3dpw/test group); write metrics and report files."""
    from model.evaluate import DEFAULT_EVAL_PREFIX
    from model.evaluate import evaluate as run_evaluation
    from storage.reader import only_group
    from storage.settings import get_settings

    store = store or get_settings().store
    group = group or only_group(store, DEFAULT_EVAL_PREFIX)
    result = run_evaluation(
        Path(checkpoint),
        store,
        group,
        Path(out_dir),
        protocol=protocol,
        filter_name=filter_name,
        device=device,
        progress=False,  # as training in its flow: a bar is noise in the run's logs
    )
    metrics = {k: v for k, v in result.metrics.items() if isinstance(v, int | float | str)}
    create_table_artifact(
        [{"metric": k, "value": v} for k, v in metrics.items()],
        key=artifact_key("evaluate", "metrics"),
        description=f"evaluate: {group} ({protocol})",
    )
    files = {name: str(path) for name, path in result.files.items()}
    create_markdown_artifact(
        f"# evaluate {group}\n\n" + "\n".join(f"- {k}: `{v}`" for k, v in files.items()) + "\n",
        key=artifact_key("evaluate", "files"),
        description="evaluate: report files",
    )
    get_run_logger().info("%s: %s", group, metrics)
    return files
