"""Store roots as users type them: spaces, non-ASCII, trailing slashes, and wrong ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from store_samples import make_sequence

from storage.errors import StoreError
from storage.maintenance import compact
from storage.provenance import Provenance
from storage.reader import open_store, store_groups
from storage.writer import StoreWriter

GROUP = "3dpw/val/base"


def _write(root: str, name: str, seed: int, **options: dict) -> None:
    writer = StoreWriter(root, GROUP, Provenance(code_version="t"), storage_options=options or None)
    writer.add(name, 0, 30.0, f"h{seed}", make_sequence(17, seed=seed))
    writer.commit()


def test_local_root_with_spaces_and_unicode_and_a_trailing_slash(tmp_path: Path) -> None:
    root = f"{tmp_path}/my stores/Données/"
    _write(root, "downtown walk", 1)
    _write(root.rstrip("/"), "office", 2)  # the same store, typed without the slash

    store = compact(root, GROUP)

    assert store_groups(root) == [GROUP]
    assert [s.name for s in store.sequences] == ["downtown walk", "office"]
    assert store.span("features", 17, 16)[0, 0] == 2.0


def test_s3_root_with_a_trailing_slash_and_unicode(s3_options: dict) -> None:
    root = "s3://tcmr-stores/ünï stores/"
    _write(root, "downtown walk", 1, **s3_options)
    _write(root.rstrip("/"), "office", 2, **s3_options)

    store = open_store(root.rstrip("/"), GROUP, storage_options=s3_options)

    assert store_groups(root, s3_options) == [GROUP]
    assert [s.name for s in store.sequences] == ["downtown walk", "office"]
    expected = make_sequence(17, seed=2)["joints2d"]
    np.testing.assert_array_equal(store.rows("joints2d", np.arange(17, 34)), expected)


def test_a_store_root_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "stores.zarr"
    root.write_text("not a folder")

    with pytest.raises(StoreError, match=rf"{root}: the store root is not a folder .*`store`"):
        _write(str(root), "office", 1)
    with pytest.raises(StoreError, match=rf"{root}/below: the store root is not a folder"):
        _write(str(root / "below"), "office", 1)
    assert root.read_text() == "not a folder"


def test_a_missing_bucket_is_a_clear_error(s3_options: dict) -> None:
    with pytest.raises(StoreError, match=r"s3://no-such-bucket/stores: cannot write .*bucket"):
        _write("s3://no-such-bucket/stores", "office", 1, **s3_options)
