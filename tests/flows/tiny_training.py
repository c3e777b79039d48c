"""A training config small enough for tests, and the synthetic stores it trains on."""

from __future__ import annotations

from pathlib import Path

from pipeline.sample.store import write_sample_store

CONFIG = """
title = "{title}"
epochs = {epochs}
iterations_per_epoch = 2
batch_2d = 1
batch_3d = 2
stride = 16
num_workers = {num_workers}
[model]
hidden_size = 16
n_layers = 1
attention_size = 8
[[datasets_2d]]
group = "insta/train/base"
use_smpl = false
use_3d = false
[[datasets_3d]]
group = "3dpw/train/base"
[validation]
group = "3dpw/test/base"
dataset = "3dpw"
max_windows = 4
"""


def tiny_config(
    title: str, epochs: int = 1, num_workers: int = 0, store: Path | None = None
) -> str:
    """The TOML text; without `store` the config leaves the store to the settings."""
    text = CONFIG.format(title=title, epochs=epochs, num_workers=num_workers)
    return text if store is None else f'store = "{store}"\n{text}'


def write_tiny_stores(stores: Path) -> Path:
    """The three groups the config names: 2D train, 3D train, 3D validation."""
    write_sample_store(stores, "insta/train/base", [32], seed=1, with_3d=False, with_smpl=False)
    write_sample_store(stores, "3dpw/train/base", [32], seed=2)
    write_sample_store(stores, "3dpw/test/base", [17, 20], seed=3)
    return stores
