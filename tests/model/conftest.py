"""Shared model fixtures: a synthetic base-data folder in the official formats, and SMPL."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_train import write_train_stores

from model.smpl import SMPL
from pipeline.sample.base_data import write_base_data


@pytest.fixture(scope="session")
def base_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base-data folder (SMPL pkls, mean params, regressors, SPIN checkpoint), seed 0."""
    folder = tmp_path_factory.mktemp("base_data")
    write_base_data(folder, seed=0)
    return folder


@pytest.fixture(scope="session")
def smpl(base_data: Path) -> SMPL:
    """The neutral SMPL model with both extra regressors."""
    return SMPL(
        base_data / "SMPL_NEUTRAL.pkl",
        base_data / "J_regressor_extra.npy",
        base_data / "J_regressor_h36m.npy",
    )


@pytest.fixture(scope="session")
def train_stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The groups `tiny_train.tiny_train_config` trains and validates on."""
    return write_train_stores(tmp_path_factory.mktemp("train_stores"))
