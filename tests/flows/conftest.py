"""Prefect for the flow tests: one in-process test harness, and a real `prefect server start`.

Both live only here (not in a top-level conftest) so tests outside `tests/flows/` never pay
Prefect's start-up. The harness is session-scoped: creating its database per test costs
seconds each on two cores (ecosystem.md §2.5).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

PREFECT = str(Path(sys.executable).with_name("prefect"))
STARTUP_TIMEOUT_S = 120.0


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Flows run in-process against a temporary SQLite-backed API for the whole session."""
    from prefect.settings import (
        PREFECT_HOME,
        PREFECT_RESULTS_LOCAL_STORAGE_PATH,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-harness")
    updates = {
        PREFECT_HOME: home,
        PREFECT_RESULTS_LOCAL_STORAGE_PATH: home / "storage",
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
    }
    with temporary_settings(updates=updates), prefect_test_harness(server_startup_timeout=120):
        yield


@dataclass(frozen=True)
class PrefectServer:
    """A running `prefect server start`: its API URL and how to talk to it from subprocesses."""

    api_url: str
    home: Path
    env: dict[str, str]
    """Environment for `prefect` CLI calls and workers aimed at this server."""

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run `prefect --no-prompt ARGS` against this server; fail the test on a non-zero exit."""
        done = subprocess.run(
            [PREFECT, "--no-prompt", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
        return done


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prefect_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment minus any Prefect settings, plus an isolated home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_PROFILES_PATH=str(home / "profiles.toml"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_ENABLED="false",
        COLUMNS="200",
        **extra,
    )
    return env


def processes_using(home: Path) -> list[psutil.Process]:
    """Our processes whose environment points at `home`: a server, its children, orphans."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("PREFECT_HOME") == str(home):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_healthy(api_url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"prefect server exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {STARTUP_TIMEOUT_S} s:\n{log.read_text()}")


def stop_group(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `grace_s`."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_s)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=grace_s)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A real `prefect server start` on loopback with its own home and SQLite database.

    Runs in its own process group; teardown stops the group and fails if any process
    using this server's home is still alive (orphaned servers hold pipes open).
    """
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    database = f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    server_env = prefect_env(home, PREFECT_SERVER_DATABASE_CONNECTION_URL=database)
    log = home / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_healthy(api_url, server, log)
        yield PrefectServer(
            api_url=api_url, home=home, env=prefect_env(home, PREFECT_API_URL=api_url)
        )
    finally:
        stop_group(server)
        survivors = processes_using(home)
        described = [f"{p.pid}: {' '.join(p.cmdline())}" for p in survivors]
        for process in survivors:
            process.kill()
        assert not survivors, f"processes outlived the server: {described}"
        shutil.rmtree(home, ignore_errors=True)


@dataclass(frozen=True)
class DaskCluster:
    """A local Dask cluster of worker processes: one advertises a GPU resource, one does not."""

    address: str
    gpu_worker: str
    cpu_worker: str


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@pytest.fixture
def dask_cluster(
    prefect_server: PrefectServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DaskCluster]:
    """Worker processes that report to the real server (never ephemeral ones, which orphan).

    Teardown closes the cluster and fails if any process started under it is still alive.
    """
    from distributed import Nanny, Scheduler, SpecCluster

    marker = f"dask-{free_port()}-{os.getpid()}"
    monkeypatch.setenv("TCMR_TEST_PROCESS_MARKER", marker)
    monkeypatch.setenv("PREFECT_API_URL", prefect_server.api_url)
    monkeypatch.setenv("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "false")
    # distributed's Nanny writes these into this process's environment and never restores
    # them: every later subprocess would run single-threaded (different float rounding).
    threads = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    worker = {"nthreads": 1, "dashboard_address": None}
    cluster = SpecCluster(
        scheduler={"cls": Scheduler, "options": {"dashboard_address": None}},
        workers={
            "gpu": {"cls": Nanny, "options": {**worker, "resources": {"GPU": 1}}},
            "cpu": {"cls": Nanny, "options": worker},
        },
        asynchronous=False,
    )
    try:
        cluster.wait_for_workers(2, timeout=120)  # workers register after start; don't race them
        info = cluster.scheduler_info["workers"]
        by_name = {str(w["name"]): address for address, w in info.items()}
        yield DaskCluster(cluster.scheduler_address, by_name["gpu"], by_name["cpu"])
    finally:
        cluster.close()
        for name, value in threads.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        deadline = time.monotonic() + 20
        while (left := marked_processes(marker)) and time.monotonic() < deadline:
            time.sleep(0.5)
        described = [f"{p.pid}: {' '.join(p.cmdline())}" for p in left]
        for process in left:
            process.kill()
        assert not left, f"processes outlived the Dask cluster: {described}"


def marked_processes(marker: str) -> list[psutil.Process]:
    """Live processes whose environment carries `marker`, except this one and its own
    multiprocessing resource tracker (which lives as long as this process does)."""
    found = []
    for process in psutil.process_iter():
        try:
            if (
                process.pid == os.getpid()
                or process.status() == psutil.STATUS_ZOMBIE
                or process.environ().get("TCMR_TEST_PROCESS_MARKER") != marker
            ):
                continue
            own_tracker = process.ppid() == os.getpid() and any(
                "resource_tracker" in part for part in process.cmdline()
            )
            if not own_tracker:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
