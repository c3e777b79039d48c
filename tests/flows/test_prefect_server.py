"""A real Prefect server on loopback: the work pool the deployments in prefect.yaml use."""

from __future__ import annotations

import json
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import PrefectServer


def test_a_process_work_pool_is_created_on_a_real_server(prefect_server: PrefectServer) -> None:
    prefect_server.cli("work-pool", "create", "tcmr-process", "--type", "process")
    try:
        with urllib.request.urlopen(f"{prefect_server.api_url}/work_pools/tcmr-process") as reply:
            pool = json.load(reply)
        # Filter endpoints: fastapi >= 0.151 rejects the explicit nulls Prefect 3.8.8 sends.
        listed = prefect_server.cli("work-pool", "ls").stdout
    finally:
        # The server is shared by the session: leave no pool for the deployment test to meet.
        prefect_server.cli("work-pool", "delete", "tcmr-process")

    assert pool["name"] == "tcmr-process"
    assert pool["type"] == "process"
    assert "tcmr-process" in listed
