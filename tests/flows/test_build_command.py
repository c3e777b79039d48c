"""`tcmr build-features` / `tcmr refresh` as a user runs them: no Prefect, same library call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from flow_data import penn_sample

TCMR = [sys.executable, "-c", "from flows.cli import main; main()"]


def tcmr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TCMR, *args], capture_output=True, text=True, env=dict(os.environ), timeout=300
    )


def test_build_then_rebuild_then_refresh(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    common = ["--data-root", str(penn_sample(tmp_path_factory)), "--store", str(tmp_path)]
    args = ["pennaction", "--split", "test", *common, "--device", "cpu", "--batch-size", "8"]
    first = tcmr("build-features", *args)
    second = tcmr("build-features", *args)
    refreshed = tcmr("refresh", *common, "--device", "cpu")

    assert first.returncode == 0, first.stderr
    assert f"{tmp_path}/pennaction/test/clean: built, 1 sequences, 18 frames" in first.stdout
    assert "parsed 1, extracted 1; +1 ~0 -0" in first.stdout
    assert "unchanged" in second.stdout and "parsed 0, extracted 0" in second.stdout
    assert refreshed.returncode == 0, refreshed.stderr
    assert "pennaction/test/clean: unchanged" in refreshed.stdout


def test_missing_root_is_one_clear_line(tmp_path: Path) -> None:
    done = tcmr(
        "build-features", "h36m", "--root", str(tmp_path / "absent"), "--store", str(tmp_path)
    )

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'absent'}: dataset root of h36m not found (field `root`)"
    ]
