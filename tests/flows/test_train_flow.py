"""The `train` flow in a Prefect run, with DataLoader worker processes as the configs use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_training import tiny_config, write_tiny_stores

from flows.train import train
from pipeline.sample.base_data import write_base_data
from storage import settings as settings_module

pytestmark = pytest.mark.usefixtures("prefect_harness")


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
    stores = write_tiny_stores(tmp_path / "stores")
    config = tmp_path / "train.toml"
    config.write_text(tiny_config("flow with workers", epochs=2, num_workers=2, store=stores))

    summary = train(config=config, out_dir=tmp_path / "run", device="cpu")

    assert summary["epochs_done"] == 2 and summary["steps"] == 4
    rows = [json.loads(line) for line in Path(str(summary["log"])).read_text().splitlines()]
    assert [row["step"] for row in rows if row["kind"] == "step"] == [1, 2, 3, 4]
    assert Path(str(summary["last_checkpoint"])).is_file()
