"""The main job on the embedded sample: sample data -> build-features -> train -> evaluate.

Runs the real flows in Prefect's ephemeral mode (no separate server) with small settings
(a handful of sequences, a few training steps), so a fresh clone shows the whole path in
a few minutes on two CPU cores. Everything it writes is under one folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.build import variant_name

DEMO_DATASETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("3dpw", ("train", "test")),
    ("pennaction", ("train",)),
)
EVAL_GROUP = f"3dpw/test/{variant_name(False)}"


@dataclass(frozen=True)
class DemoOutputs:
    """Where the demo put its results."""

    store: Path
    checkpoint: Path
    metrics: Path
    report: Path


def prefect_environment(out: Path) -> None:
    """Ephemeral Prefect with its own home under `out`, unless a server is configured.

    Must run before `prefect` is imported; the start-up timeout is raised because a fresh
    home migrates its database first, which takes longer than 20 s on a loaded machine.
    """
    if os.environ.get("PREFECT_API_URL"):
        return
    os.environ.setdefault("PREFECT_HOME", str(out / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_ENABLED", "true")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def train_config(store: Path) -> str:
    """A tiny training config (TOML) over the demo's store groups: a few steps, one epoch."""
    variant = variant_name(False)
    return f"""# Demo: a few steps of the official recipe on the sample's stores.
title = "demo"
store = "{store}"
epochs = 1
iterations_per_epoch = 4
stride = 16
batch_2d = 2
batch_3d = 2
num_workers = 0

[[datasets_2d]]
group = "pennaction/train/{variant}"
use_smpl = false
use_3d = false

[[datasets_3d]]
group = "3dpw/train/{variant}"

[validation]
group = "{EVAL_GROUP}"
dataset = "3dpw"
batch_size = 8
"""


def run_demo(out: Path, device: str = "cpu") -> DemoOutputs:
    """Write the sample under `out`, build its stores, train briefly and evaluate."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    prefect_environment(out)
    sample, store = out / "sample", out / "stores"
    os.environ["TCMR_BASE_DATA"] = str(sample / "base_data")
    os.environ["TCMR_STORE"] = str(store)

    from flows.artifacts import summary_markdown
    from flows.build_features import build_features
    from flows.evaluate import evaluate
    from flows.parameters import DatasetSpec, FeatureRecipe
    from flows.train import train
    from pipeline.sample import write_sample_data

    done = sample / ".complete"
    if not done.exists():
        write_sample_data(sample, seed=0)
        done.touch()
    specs = [DatasetSpec(dataset=d, splits=list(s)) for d, s in DEMO_DATASETS]  # type: ignore[arg-type]
    outcomes = build_features(
        datasets=specs,
        data_root=sample,
        store=str(store),
        recipe=FeatureRecipe(device=device, batch_size=16),
        base_data=sample / "base_data",
    )
    config = out / "demo_train.toml"
    config.write_text(train_config(store))
    trained = train(config=config, out_dir=out / "train", store=str(store), device=device)
    checkpoint = Path(str(trained["best_checkpoint"] or trained["last_checkpoint"]))
    files = evaluate(
        checkpoint=checkpoint,
        group=EVAL_GROUP,
        store=str(store),
        out_dir=out / "evaluate",
        device=device,
    )
    metrics = Path(files["metrics"])
    report = out / "report.md"
    lines = [summary_markdown([o.summary() for o in outcomes], flow="build-features")]
    lines += ["# train", ""] + [f"- {k}: {v}" for k, v in trained.items()] + [""]
    lines += ["# evaluate", ""] + [f"- {k}: {v}" for k, v in files.items()]
    report.write_text("\n".join(lines) + "\n")
    return DemoOutputs(store=store, checkpoint=checkpoint, metrics=metrics, report=report)
