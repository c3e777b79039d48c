"""A training config small enough for tests, the synthetic stores it trains on, its loss log."""

from __future__ import annotations

import json
from pathlib import Path

from model.train import DatasetSpec, TrainConfig, ValidationSpec
from pipeline.sample.store import write_sample_store

TINY_MODEL = {"hidden_size": 16, "n_layers": 1, "attention_size": 8}


def write_train_stores(root: Path) -> Path:
    """2D train (InstaVariety), 3D train (3DPW, MPI-INF-3DHP) and 3DPW validation groups."""
    write_sample_store(root, "insta/train/base", [20, 18], seed=1, with_3d=False, with_smpl=False)
    write_sample_store(root, "3dpw/train/base", [24], seed=2)
    write_sample_store(root, "mpii3d/train/base", [17], seed=3, with_smpl=False)
    write_sample_store(root, "3dpw/val/base", [17], seed=4)
    return root


def tiny_train_config(stores: Path, **changes) -> TrainConfig:
    """Two epochs of three steps over the groups of `write_train_stores`."""
    base = TrainConfig(
        title="test",
        store=str(stores),
        epochs=2,
        iterations_per_epoch=3,
        batch_2d=2,
        batch_3d=2,
        stride=1,
        num_workers=0,
        model=TINY_MODEL,
        datasets_2d=[DatasetSpec(group="insta/train/base", use_smpl=False, use_3d=False)],
        datasets_3d=[
            DatasetSpec(group="3dpw/train/base"),
            DatasetSpec(group="mpii3d/train/base", use_smpl=False),
        ],
        validation=ValidationSpec(group="3dpw/val/base", dataset="3dpw", max_windows=8),
    )
    return base.model_copy(update=changes)


def step_losses(out: Path) -> dict[int, float]:
    """Total loss by step, from a run's `metrics.jsonl`."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss_total"] for row in rows if row["kind"] == "step"}
