"""Per-run Prefect artifacts: a table per dataset and a markdown summary of what a run did.

Tasks return `DatasetSummary` values (small, JSON-able) instead of arrays; the flow turns
them into one table artifact and one markdown artifact, whose keys version them per flow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args
from uuid import UUID

Status = Literal["built", "unchanged", "failed"]


@dataclass(frozen=True)
class DatasetSummary:
    """What one (dataset, split, variant) part of a run did."""

    dataset: str
    split: str
    variant: str
    status: Status
    sequences: int = 0
    frames: int = 0
    windows: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)
    """Skipped sequences per reason (e.g. `{"shorter than 16 frames": 2}`)."""
    seconds: float = 0.0
    """Wall time of the parse and extraction work (0 when nothing was done)."""
    message: str = ""
    """Why the part failed, as the run's logs and state message give it."""
    store: str = ""
    """The store group written or kept (e.g. `data/stores/3dpw/train/occ`)."""

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.split}/{self.variant}"

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _skipped_text(skipped: Mapping[str, int]) -> str:
    return "; ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))


def summary_rows(summaries: Sequence[DatasetSummary]) -> list[dict[str, str | int | float]]:
    """One row per dataset part, the columns of the run's table artifact."""
    return [
        {
            "dataset": s.dataset,
            "split": s.split,
            "variant": s.variant,
            "status": s.status,
            "sequences": s.sequences,
            "frames": s.frames,
            "windows": s.windows,
            "skipped": sum(s.skipped.values()),
            "skip reasons": _skipped_text(s.skipped),
            "frames/s": round(s.frames_per_second, 1),
            "store": s.store,
        }
        for s in summaries
    ]


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def summary_markdown(summaries: Sequence[DatasetSummary], *, flow: str) -> str:
    """The run's markdown summary: counts by status, the table, failures and skips."""
    counts = {status: sum(s.status == status for s in summaries) for status in get_args(Status)}
    headline = ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "nothing to do"
    lines = [f"# {flow}: {headline}"]
    rows = summary_rows(summaries)
    if rows:
        columns = list(rows[0])
        lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
        frames = sum(s.frames for s in summaries)
        seconds = sum(s.seconds for s in summaries)
        rate = f" ({frames / seconds:.1f} frames/s)" if seconds > 0 else ""
        lines += ["", f"{frames} frames processed in {seconds:.1f} s{rate}."]
    failed = [s for s in summaries if s.status == "failed"]
    if failed:
        lines += ["", "## Failed (their stores keep the previous version)", ""]
        lines += [f"- **{s.name}**: {_cell(s.message or 'no reason given')}" for s in failed]
    skipped = [s for s in summaries if s.skipped]
    if skipped:
        lines += ["", "## Skipped sequences", ""]
        lines += [f"- **{s.name}**: {_cell(_skipped_text(s.skipped))}" for s in skipped]
    return "\n".join(lines) + "\n"


def artifact_key(flow: str, kind: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes) for a flow's artifact kind."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{flow} {kind}".lower())
    return slug.strip("-")


def publish_run_artifacts(summaries: Sequence[DatasetSummary], *, flow: str) -> tuple[UUID, UUID]:
    """Create the table and markdown artifacts of the current flow run; return their ids."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    table = create_table_artifact(
        summary_rows(summaries),
        key=artifact_key(flow, "datasets"),
        description=f"{flow}: per dataset sequences, frames, windows, skips and speed",
    )
    markdown = create_markdown_artifact(
        summary_markdown(summaries, flow=flow),
        key=artifact_key(flow, "summary"),
        description=f"{flow}: run summary",
    )
    return table, markdown
