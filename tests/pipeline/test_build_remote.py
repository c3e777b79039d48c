"""The staged build (plan, shards, commit, refresh, resume) with its store on S3 (moto server).

The dataset is the smallest that still makes two shards: one InstaVariety TFRecord of two
tracks (2 and 1 frames), read from local disk; the store and its staging folder are on S3.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from tfrecord_files import jpeg, write_tracks

from pipeline.build import BuildRequest, BuildResult, build_dataset, extract_shard, plan_build
from storage.backend import Location
from storage.errors import StoreError
from storage.reader import Store, open_store
from storage.schema import ARRAYS
from storage.writer import WINDOW_PROTOCOLS, read_pointer

BUCKET = "tcmr-stores"
GROUP = "insta/train/clean"
FILE = "insta_variety_00_copy00_hmr_noS5.ckpt-642561.tfrecord"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> tuple[Path, Path]:
    """(dataset root, SPIN checkpoint): two tracks of 2 and 1 frames in one TFRecord."""
    folder = tmp_path_factory.mktemp("insta-remote")
    images = _images()
    root = folder / "insta_variety"
    write_tracks(root / "train" / FILE, [images[:2], images[2:]], seed=11)
    return root, checkpoint


def _images() -> list[bytes]:
    """The three JPEGs of the module's dataset (tracks: the first two, the last one)."""
    rng = np.random.default_rng(11)
    return [jpeg(rng) for _ in range(3)]


def _request(
    inputs: tuple[Path, Path], store: str | Location, root: Path | None = None
) -> BuildRequest:
    source, checkpoint = inputs
    store_root: Any = store  # `BuildRequest.store` takes a Location with its storage options
    # Batches of 2 frames are the same in every build here (tracks of 2 and 1 frames, shards
    # of one track or both), so CPU features are bit for bit comparable between builds.
    return BuildRequest("insta", "train", root or source, store_root, checkpoint, batch_size=2)


@pytest.fixture(scope="module")
def local_store(inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = str(tmp_path_factory.mktemp("local-stores"))
    build_dataset(_request(inputs, store))  # one shard: sharding must not change the data
    return open_store(store, GROUP)


@pytest.fixture(scope="module")
def s3_build(inputs: tuple[Path, Path], s3_options: dict[str, Any]) -> tuple[Location, BuildResult]:
    loc = Location(f"s3://{BUCKET}/build-clean", s3_options)
    return loc, build_dataset(_request(inputs, loc), shard_frames=2)


def _client(s3_options: dict[str, Any]) -> Any:
    """A boto3 client of the moto server: what is on S3, seen without fsspec or its caches."""
    return boto3.client(
        "s3",
        endpoint_url=s3_options["client_kwargs"]["endpoint_url"],
        aws_access_key_id=s3_options["key"],
        aws_secret_access_key=s3_options["secret"],
        region_name="us-east-1",
    )


def _objects(s3_options: dict[str, Any], prefix: str) -> dict[str, str]:
    """Key -> ETag of every object under `prefix` of the bucket."""
    pages = (
        _client(s3_options).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    )
    return {item["Key"]: item["ETag"] for page in pages for item in page.get("Contents", [])}


def _assert_same_store(store: Store, reference: Store) -> None:
    assert store.provenance == reference.provenance
    assert store.sequences == reference.sequences
    assert len(store) == len(reference) == 3
    for name in ARRAYS:
        got, want = store.read(name, 0, len(store)), reference.read(name, 0, len(reference))
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    for protocol in WINDOW_PROTOCOLS:
        np.testing.assert_array_equal(store.windows(protocol), reference.windows(protocol))


def test_a_build_on_s3_equals_the_local_build_and_leaves_no_staging(
    s3_build: tuple[Location, BuildResult], local_store: Store, s3_options: dict[str, Any]
) -> None:
    loc, result = s3_build
    remote = open_store(loc, GROUP)
    objects = _objects(s3_options, "build-clean/")

    assert (result.status, result.parsed, result.extracted, result.added) == ("built", 2, 2, 2)
    assert (result.sequences, result.frames) == (2, 3)
    assert result.store == f"s3://{BUCKET}/build-clean/{GROUP}"
    _assert_same_store(remote, local_store)
    assert len(remote.segments) == 2  # one segment per shard
    assert len({row.tobytes() for row in remote.read("features", 0, 3)}) == 3
    assert f"build-clean/{GROUP}/zarr.json" in objects
    assert not [key for key in objects if "/.staging/" in key]


def test_an_unchanged_rebuild_on_s3_parses_nothing_and_changes_no_object(
    s3_build: tuple[Location, BuildResult], inputs: tuple[Path, Path], s3_options: dict[str, Any]
) -> None:
    loc, _ = s3_build
    before = _objects(s3_options, "build-clean/")

    again = build_dataset(_request(inputs, loc), shard_frames=2)

    assert (again.status, again.parsed, again.extracted, again.changed) == (
        "unchanged",
        0,
        0,
        False,
    )
    assert (again.sequences, again.frames) == (2, 3)
    assert _objects(s3_options, "build-clean/") == before


def test_tcmr_refresh_finds_the_s3_store_from_the_setting_and_aws_environment(
    s3_build: tuple[Location, BuildResult], inputs: tuple[Path, Path], s3_options: dict[str, Any]
) -> None:
    """As the README tells users: the URL in `TCMR_STORE`, credentials and endpoint in AWS_*."""
    loc, _ = s3_build
    root, checkpoint = inputs
    before = _objects(s3_options, "build-clean/")
    env = {
        **os.environ,
        "TCMR_STORE": loc.root,
        "TCMR_CONFIG": str(root / "absent.toml"),
        "AWS_ACCESS_KEY_ID": s3_options["key"],
        "AWS_SECRET_ACCESS_KEY": s3_options["secret"],
        "AWS_ENDPOINT_URL": s3_options["client_kwargs"]["endpoint_url"],
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    command = ["refresh", "--data-root", str(root.parent), "--checkpoint", str(checkpoint)]

    done = subprocess.run(
        [sys.executable, "-c", "from flows.cli import main; main()", *command, "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    assert f"{loc.root}/{GROUP}: unchanged, 2 sequences, 3 frames" in done.stdout
    assert "parsed 0, extracted 0" in done.stdout
    assert _objects(s3_options, "build-clean/") == before


def test_a_changed_source_on_s3_extracts_only_what_changed_and_clears_old_staging(
    inputs: tuple[Path, Path], s3_options: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path / "insta_variety"
    shutil.copytree(inputs[0], root)
    loc = Location(f"s3://{BUCKET}/build-refresh", s3_options)
    request = _request(inputs, loc, root)
    build_dataset(request)
    before = open_store(loc, GROUP)
    rng = np.random.default_rng(12)
    first, second = jpeg(rng), jpeg(rng)
    track0 = _images()[:2]
    write_tracks(root / "train" / FILE, [track0, [first], [second]], seed=11)
    abandoned = plan_build(request)  # staged, never extracted: the run died
    left = _objects(s3_options, "build-refresh/.staging/")
    write_tracks(root / "train" / FILE, [track0, [second]], seed=11)

    refreshed = build_dataset(request)
    after = open_store(loc, GROUP)

    assert len(left) == 2 and all(
        key.startswith(abandoned.staging.split("/", 1)[1]) for key in left
    )
    assert _objects(s3_options, "build-refresh/.staging/") == {}  # the new plan removed them
    assert (refreshed.status, refreshed.parsed, refreshed.extracted) == ("built", 2, 1)
    assert (refreshed.added, refreshed.replaced, refreshed.dropped) == (0, 1, 0)
    assert after.sequences[0] == before.sequences[0]  # kept in its committed segment
    assert after.sequences[1].content_hash != before.sequences[1].content_hash
    assert len(after.segments) == 2
    np.testing.assert_array_equal(after.read("features", 0, 2), before.read("features", 0, 2))
    assert not np.array_equal(after.read("features", 2, 3), before.read("features", 2, 3))


def test_an_interrupted_build_on_s3_resumes_to_the_clean_build(
    inputs: tuple[Path, Path], local_store: Store, s3_options: dict[str, Any]
) -> None:
    loc = Location(f"s3://{BUCKET}/build-resumed", s3_options)
    request = _request(inputs, loc)
    interrupted = plan_build(request, shard_frames=2)
    first = extract_shard(request, interrupted.shards[0])  # then the run dies
    staged = _objects(s3_options, "build-resumed/.staging/")

    resumed = build_dataset(request, shard_frames=2)
    pointer = read_pointer(loc, GROUP)

    assert len(interrupted.shards) == 2 and first.segment is not None
    assert interrupted.staging.startswith(f"{BUCKET}/build-resumed/.staging/{GROUP}/")
    assert len(staged) == 3  # two staged sequences and the first shard's marker
    assert (resumed.status, resumed.frames, resumed.added) == ("built", 3, 2)
    assert pointer is not None and first.segment.segment_id in pointer["segments"]
    assert len(pointer["segments"]) == 2
    _assert_same_store(open_store(loc, GROUP), local_store)
    assert not _objects(s3_options, "build-resumed/.staging/")


def test_a_build_into_a_missing_bucket_fails_naming_the_store_and_creates_no_bucket(
    inputs: tuple[Path, Path], s3_options: dict[str, Any]
) -> None:
    loc = Location("s3://no-such-bucket/stores", s3_options)

    with pytest.raises(StoreError) as raised:
        plan_build(_request(inputs, loc))

    assert str(raised.value).startswith("s3://no-such-bucket/stores: cannot stage sequences")
    assert "bucket does not exist" in str(raised.value) and "(field `store`)" in str(raised.value)
    assert [b["Name"] for b in _client(s3_options).list_buckets()["Buckets"]] == [BUCKET]
