"""Synthetic sample data in the datasets' and base data's real on-disk formats.

`write_sample_data(out)` writes the base data (`out/base_data`) and every dataset in its
release layout under `out/<DatasetDir>/`; the main-job command and the tests read it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

# dataset -> (folder under `out`, writer module, writer function name).
WRITERS: dict[str, tuple[str, str, str]] = {
    "3dpw": ("3DPW", "pipeline.sample.pw3d", "write_3dpw"),
    "insta": ("insta_variety", "pipeline.sample.insta", "write_insta"),
}


def _writer(module: str, name: str) -> Callable[..., Any]:
    import importlib

    return getattr(importlib.import_module(module), name)


def write_sample(out: Path, seed: int = 0) -> dict[str, Any]:
    """Write the whole sample; returns each writer's planted truth (and the base-data paths)."""
    from pipeline.sample.base_data import write_base_data

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, Any] = {"base_data": write_base_data(out / "base_data", seed)}
    for dataset, (_, module, name) in WRITERS.items():
        truth[dataset] = _writer(module, name)(out, seed=seed)
    return truth


def write_sample_data(out: Path, seed: int = 0) -> dict[str, Path]:
    """Write the whole sample; returns dataset name (and `base_data`) -> its folder."""
    write_sample(out, seed)
    folders = {"base_data": Path(out) / "base_data"}
    folders.update({dataset: Path(out) / folder for dataset, (folder, _, _) in WRITERS.items()})
    return folders
