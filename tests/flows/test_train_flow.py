"""The `train` flow in a Prefect run, with DataLoader worker processes as the configs use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.train import train
from pipeline.sample.base_data import write_base_data
from pipeline.sample.store import write_sample_store
from storage import settings as settings_module

pytestmark = pytest.mark.usefixtures("prefect_harness")

CONFIG = """
title = "flow with workers"
store = "{store}"
epochs = 2
iterations_per_epoch = 2
batch_2d = 1
batch_3d = 2
stride = 16
num_workers = 2
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


@pytest.fixture
def base_data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Base data in TCMR_BASE_DATA, read afresh (the settings are cached per process)."""
    write_base_data(tmp_path / "base", seed=0)
    monkeypatch.setenv("TCMR_BASE_DATA", str(tmp_path / "base"))
    settings_module._cached.cache_clear()
    yield tmp_path / "base"
    settings_module._cached.cache_clear()


def test_train_flow_with_worker_processes_finishes_every_epoch(
    tmp_path: Path, base_data_env: Path
) -> None:
    # In a flow run, Prefect's log and event services have registered thread exit hooks in
    # this process; forked workers used to inherit them and exit with code 1, and the
    # DataLoader raised at the end of the first epoch.
    stores = tmp_path / "stores"
    write_sample_store(stores, "insta/train/base", [32], seed=1, with_3d=False, with_smpl=False)
    write_sample_store(stores, "3dpw/train/base", [32], seed=2)
    write_sample_store(stores, "3dpw/test/base", [17, 20], seed=3)
    config = tmp_path / "train.toml"
    config.write_text(CONFIG.format(store=stores))

    summary = train(config=config, out_dir=tmp_path / "run", device="cpu")

    assert summary["epochs_done"] == 2 and summary["steps"] == 4
    rows = [json.loads(line) for line in Path(str(summary["log"])).read_text().splitlines()]
    assert [row["step"] for row in rows if row["kind"] == "step"] == [1, 2, 3, 4]
    assert Path(str(summary["last_checkpoint"])).is_file()
