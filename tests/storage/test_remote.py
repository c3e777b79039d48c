"""The same API against a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.request import urlopen

import numpy as np
import pytest
from store_samples import make_sequence

from storage.maintenance import compact
from storage.provenance import Provenance
from storage.reader import content_hashes, open_store, store_groups
from storage.writer import StoreWriter


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_options() -> Iterator[dict]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urlopen(endpoint, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        import boto3

        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket="tcmr-stores")
        yield options
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_write_read_refresh_compact_on_s3(s3_options: dict) -> None:
    root, group = "s3://tcmr-stores/features", "h36m/test/base"
    provenance = Provenance(code_version="remote")
    writer = StoreWriter(root, group, provenance, storage_options=s3_options)
    writer.add("S9_walk", 0, 25.0, "h1", make_sequence(20, seed=1))
    writer.add("S11_walk", 0, 25.0, "h2", make_sequence(17, seed=2))
    writer.commit()
    store = open_store(root, group, storage_options=s3_options)
    assert len(store) == 37 and store.provenance == provenance
    np.testing.assert_array_equal(store.read("pose", 20, 37), make_sequence(17, seed=2)["pose"])
    assert len(store.windows("eval_tcmr")) == 37
    assert store_groups(root, s3_options) == [group]
    writer = StoreWriter(root, group, provenance, storage_options=s3_options)
    writer.drop("S9_walk", 0)
    writer.commit()
    assert content_hashes(root, group, s3_options) == {("S11_walk", 0): "h2"}
    compacted = compact(root, group, storage_options=s3_options)
    assert len(compacted) == 17 and len(compacted.segments) == 1
    np.testing.assert_array_equal(
        compacted.rows("joints2d", np.arange(16)), make_sequence(17, seed=2)["joints2d"][:16]
    )
