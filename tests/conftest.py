"""Fixtures more than one test package needs: a real S3-compatible server (moto) on loopback.

Kept free of heavy imports, so collecting any test pays nothing for them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.request import urlopen

import pytest

S3_BUCKET = "tcmr-stores"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_options() -> Iterator[dict]:
    """fsspec `storage_options` for a moto S3 server holding the empty bucket `tcmr-stores`.

    One server for the session: each test writes below its own prefix of the bucket.
    """
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urlopen(endpoint, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"moto server on {endpoint} did not answer within 30 s")
        import boto3

        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=S3_BUCKET)
        yield {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
    finally:
        server.terminate()
        server.wait(timeout=10)
