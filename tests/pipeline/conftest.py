"""The sample dataset, written once per test session in the real on-disk formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from model.smpl import SMPL
from pipeline.sample import write_sample
from pipeline.sample.base_data import write_base_data


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sample")


@pytest.fixture(scope="session")
def sample_truth(sample_dir: Path) -> dict[str, Any]:
    """Planted truth of every dataset writer (the sample files are under `sample_dir`)."""
    return write_sample(sample_dir, seed=0)


@pytest.fixture(scope="session")
def sample_body(sample_dir: Path, sample_truth: dict[str, Any]) -> SMPL:
    """The neutral SMPL of the sample's base data, loaded as a reader loads it."""
    from pipeline.datasets.pw3d import load_body

    return load_body(sample_dir / "base_data")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SPIN `model_checkpoint` from the base-data writer alone (no need for the whole sample)."""
    folder = tmp_path_factory.mktemp("base_data")
    write_base_data(folder, seed=0)
    return folder / "spin_model_checkpoint.pth.tar"
