"""The whole sample: every dataset folder in its release layout, small, and the CLI command."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from flows.cli import app
from pipeline.sample import STAGING_PREFIX, WRITERS, sample_folders, write_sample_data


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


def _listing(folder: Path) -> dict[str, bytes]:
    """Every file of the sample under `folder`, staging left out, with its bytes."""
    files = (f for f in folder.rglob("*") if f.is_file())
    return {
        str(f.relative_to(folder)): f.read_bytes()
        for f in files
        if not f.relative_to(folder).parts[0].startswith(STAGING_PREFIX)
    }


def test_killed_sample_data_keeps_the_earlier_sample_whole(tmp_path: Path) -> None:
    out = tmp_path / "sample"
    write_sample_data(out, seed=1)
    (out / "3DPW" / "notes.txt").write_text("mine")
    before = _listing(out)

    tcmr = Path(sys.executable).with_name("tcmr")
    process = subprocess.Popen([str(tcmr), "sample-data", str(out), "--seed", "2"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        staged = [p for p in out.glob(f"{STAGING_PREFIX}*/new/*") if p.name == "3DPW"]
        if staged:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "sample-data finished before it was killed"
    assert _listing(out) == before
    assert list(out.glob(f"{STAGING_PREFIX}*"))

    folders = write_sample_data(out, seed=2)
    assert not list(out.glob(f"{STAGING_PREFIX}*"))
    assert not (out / "3DPW" / "notes.txt").exists()  # each folder is replaced whole
    assert sorted(p.name for p in out.iterdir()) == sorted(folders)
    assert _listing(out) != before


def test_base_data_and_checkpoints_are_the_same_bytes_from_every_process(tmp_path: Path) -> None:
    # A build keys its stores on the SPIN checkpoint's checksum: base data written again by
    # another process (another temporary name) must not look like a new backbone.
    script = (
        "import sys; from pathlib import Path\n"
        "from pipeline.sample.base_data import write_base_data\n"
        "from pipeline.sample.tcmr_checkpoint import write_official_tcmr_checkpoint\n"
        "out = Path(sys.argv[1]); write_base_data(out)\n"
        "write_official_tcmr_checkpoint(out / 'tcmr_demo_model.pth.tar')\n"
    )
    for run in ("a", "b"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / run)], check=True)
    for name in ("spin_model_checkpoint.pth.tar", "tcmr_demo_model.pth.tar", "SMPL_NEUTRAL.pkl"):
        first, second = (tmp_path / run / name for run in ("a", "b"))
        assert first.read_bytes() == second.read_bytes(), name
