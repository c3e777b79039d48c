"""The whole sample: every dataset folder in its release layout, small, and the CLI command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from flows.cli import app
from pipeline.sample import WRITERS, sample_folders


def test_sample_has_every_dataset_and_base_data(
    sample_dir: Path, sample_truth: dict[str, Any]
) -> None:
    for _, _, folders in WRITERS.values():
        for folder in folders:
            assert any((sample_dir / folder).rglob("*.*")), folder
    for name in ("SMPL_NEUTRAL.pkl", "J_regressor_extra.npy", "J_regressor_h36m.npy",
                 "smpl_mean_params.npz", "spin_model_checkpoint.pth.tar"):  # fmt: skip
        assert (sample_dir / "base_data" / name).is_file()
    datasets = sum(
        f.stat().st_size for folder in sample_dir.iterdir() if folder.name != "base_data"
        for f in folder.rglob("*") if f.is_file()
    )  # fmt: skip
    assert datasets < 30e6
    assert not list(sample_dir.rglob("*.partial*"))
    # At least one sequence longer than 40 frames (3DPW train).
    assert len(sample_truth["3dpw"].people[("train", "courtyard_fake_00", 0)].joints49) > 40


def test_sample_folders_are_the_release_layouts(sample_dir: Path, sample_truth: dict) -> None:
    folders = sample_folders(sample_dir)
    assert all(path.is_dir() for path in folders.values())
    assert (folders["3DPW"] / "sequenceFiles" / "validation" / "downtown_fake_00.pkl").is_file()
    assert (folders["pennaction"] / "labels" / "0001.mat").is_file()
    assert (folders["posetrack"] / "posetrack_data" / "annotations" / "train").is_dir()


def test_cli_has_sample_data_command() -> None:
    result = CliRunner().invoke(app, ["sample-data", "--help"])
    assert result.exit_code == 0 and "OUT" in result.output and "--seed" in result.output
