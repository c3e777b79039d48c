"""The `train` flow: TCMR training from the stores with a config file (model.train.train).

Deployed as `train/scheduled`: a weekly cron, and an event trigger that starts it when a
refresh emits `tcmr.features.updated`.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.artifacts import artifact_key


@flow(name="train", log_prints=True)
def train(
    config: Path = Path("configs/table6_3dpw.toml"),
    out_dir: Path = Path("runs/train"),
    store: str | None = None,
    resume: Path | None = None,
    max_steps: int | None = None,
    device: str | None = None,
    triggered_by: str = "",
) -> dict[str, str | float | int]:
    """Train with `config` (its store overridden by `store` when given) into `out_dir`.

    `resume` continues exactly from one of our checkpoints; `max_steps` time-boxes a run.
    """
    from model.train import load_train_config
    from model.train import train as run_training

    logger = get_run_logger()
    if triggered_by:
        logger.info("started by %s", triggered_by)
    settings = load_train_config(config)
    if store is not None:
        settings = settings.model_copy(update={"store": store})
    result = run_training(
        settings, Path(out_dir), resume=resume, device=device, progress=False, max_steps=max_steps
    )
    summary: dict[str, str | float | int] = {
        "config": str(config),
        "last_checkpoint": str(result.last_checkpoint),
        "best_checkpoint": str(result.best_checkpoint or ""),
        "best_pa_mpjpe": float(result.best_pa_mpjpe),
        "epochs_done": result.epochs_done,
        "steps": result.steps,
        "log": str(result.log),
    }
    create_markdown_artifact(
        "# train\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in summary.items()) + "\n",
        key=artifact_key("train", "summary"),
        description="train: checkpoints and best validation PA-MPJPE",
    )
    logger.info("trained %d steps; best PA-MPJPE %.1f mm", result.steps, result.best_pa_mpjpe)
    return summary
