"""End to end: `prefect.yaml` deployed to a real server, run by a real process worker."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flow_data import penn_sample

from storage.reader import open_store

if TYPE_CHECKING:
    from conftest import PrefectServer

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
RUN_TIMEOUT_S = 400.0


def _api(server: PrefectServer, path: str, body: dict | None = None) -> dict | list:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{server.api_url}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _cli(server: PrefectServer, *args: str) -> str:
    """`prefect --no-prompt ARGS` from the repository root (where prefect.yaml is)."""
    done = subprocess.run(
        [PREFECT, "--no-prompt", *args],
        cwd=REPO,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def deployed(prefect_server: PrefectServer) -> Iterator[None]:
    """prefect.yaml deployed to the session server; its work pool is removed afterwards."""
    _cli(prefect_server, "work-pool", "create", "tcmr-process", "--type", "process")
    try:
        _cli(prefect_server, "deploy", "--all")
        yield
    finally:
        _cli(prefect_server, "work-pool", "delete", "tcmr-process")


@pytest.mark.slow
@pytest.mark.usefixtures("deployed")
def test_build_features_deployment_runs_on_a_worker(
    prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    sample = penn_sample(tmp_path_factory)
    store = tmp_path / "stores"
    deployments = {d["name"] for d in _api(prefect_server, "/deployments/filter", {})}
    pull = _api(prefect_server, "/deployments/name/build-features/default")["pull_steps"]
    params = {
        "datasets": [{"dataset": "pennaction", "splits": ["test"]}],
        "data_root": str(sample),
        "store": str(store),
        "recipe": {"device": "cpu", "batch_size": 8},
    }
    started = _cli(
        prefect_server,
        "deployment",
        "run",
        "build-features/default",
        "--params",
        json.dumps(params),
    )
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", started)
    assert run_id, started

    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as out:
        worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "tcmr-process", "--run-once"],
            cwd=tmp_path,
            env=prefect_server.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        worker.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    state = _api(prefect_server, f"/flow_runs/{run_id.group(1)}")["state"]

    assert state["type"] == "COMPLETED", f"{state}\n{worker_log.read_text()[-4000:]}"
    assert {"default", "nightly", "scheduled"} <= deployments
    assert pull == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
    built = open_store(str(store), "pennaction/test/clean")
    assert len(built.sequences) == 1 and len(built) == 18
    assert len(built.windows("eval_tcmr")) == 18


@pytest.mark.slow
@pytest.mark.usefixtures("deployed")
def test_features_updated_event_starts_training(prefect_server: PrefectServer) -> None:
    train = _api(prefect_server, "/deployments/name/train/scheduled")
    query = {"flow_runs": {"deployment_id": {"any_": [train["id"]]}}}
    triggered: list[dict] = []
    deadline = time.monotonic() + 90
    while not triggered and time.monotonic() < deadline:
        # The trigger service loads new automations periodically: emit until one matches.
        _cli(
            prefect_server,
            "event", "emit", "tcmr.features.updated",
            "--resource-id", "tcmr.dataset.pennaction",
        )  # fmt: skip
        time.sleep(5)
        runs = _api(prefect_server, "/flow_runs/filter", query)
        triggered = [r for r in runs if r["parameters"].get("triggered_by")]

    assert triggered, "no train run was created by the tcmr.features.updated trigger"
    assert triggered[0]["parameters"]["triggered_by"] == (
        "tcmr.features.updated tcmr.dataset.pennaction"
    )
    assert train["schedules"][0]["schedule"]["cron"] == "0 4 * * 0"
