"""build-features given links instead of a root: fetched from a loopback HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flow_data import penn_sample
from prefect.states import State

from flows.build_features import build_features
from flows.parameters import DatasetSpec, FeatureRecipe
from storage.reader import open_store

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server over a folder: (base URL, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_links_are_fetched_verified_and_built(
    served: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    base_url, folder = served
    penn = penn_sample(tmp_path_factory) / "pennaction"
    archive = folder / "Penn_Action.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # the test split's one video only
        tar.add(penn / "labels" / "0002.mat", "labels/0002.mat")
        tar.add(penn / "frames" / "0002", "frames/0002")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    root, store = tmp_path / "pennaction", tmp_path / "stores"

    def run(sha256: str) -> State:
        link = {"url": f"{base_url}/Penn_Action.tar.gz", "sha256": sha256}
        spec = DatasetSpec(
            dataset="pennaction", splits=["test"], root=root, urls={"Penn_Action.tar.gz": link}
        )
        return build_features(
            datasets=[spec],
            data_root=penn_sample(tmp_path_factory),
            store=str(store),
            recipe=FeatureRecipe(device="cpu", batch_size=8),
            return_state=True,
        )

    wrong = run("0" * 64)
    extracted_after_wrong = sorted(p.name for p in root.rglob("*") if p.is_file())
    right = run(digest)

    assert wrong.is_failed()
    assert "download failed" in wrong.message and "sha256" in wrong.message
    assert extracted_after_wrong == []
    assert right.is_completed(), right.message
    assert (root / "labels" / "0002.mat").is_file()
    assert len(open_store(str(store), "pennaction/test/clean")) == 18
