"""A store of another schema version is rebuilt in place, as its error message tells the user."""

from __future__ import annotations

from pathlib import Path

import pytest
import zarr
from official_db import threedpw_db
from store_samples import make_sequence

from storage.backend import STORE_ATTR
from storage.errors import StoreError
from storage.importdb import import_db
from storage.provenance import Provenance
from storage.reader import open_store
from storage.writer import StoreWriter

GROUP = "3dpw/test/base"


def _older_schema(root: Path) -> None:
    """A committed store whose pointer says another schema (and whose provenance differs)."""
    writer = StoreWriter(str(root), GROUP, Provenance(code_version="old"), mode="overwrite")
    writer.add("old_seq", 0, 30.0, "h", make_sequence(20, seed=1))
    writer.commit()
    group = zarr.open_group(str(root), path=GROUP, mode="a")
    pointer = dict(group.attrs[STORE_ATTR], schema_version=0)
    pointer["provenance"] = {"backbone": "a field this schema does not have"}
    group.attrs.put({STORE_ATTR: pointer})


def test_overwrite_and_import_rebuild_a_store_of_another_schema(tmp_path: Path) -> None:
    _older_schema(tmp_path)
    with pytest.raises(StoreError, match=r"schema version 0.*Rebuild the store"):
        open_store(str(tmp_path), GROUP)
    with pytest.raises(StoreError, match="schema version 0"):
        StoreWriter(str(tmp_path), GROUP, Provenance())  # append keeps nothing it can't read

    writer = StoreWriter(str(tmp_path), GROUP, Provenance(), mode="overwrite")
    writer.add("new_seq", 0, 30.0, "h", make_sequence(17, seed=2))
    writer.commit()
    assert [s.name for s in open_store(str(tmp_path), GROUP).sequences] == ["new_seq"]

    _older_schema(tmp_path)
    db = tmp_path / "3dpw_test_db.pt"
    threedpw_db(db, {"downtown_walking_00": 20})
    plan = import_db(db, "3dpw", "test", str(tmp_path), GROUP)
    store = open_store(str(tmp_path), GROUP)
    assert plan.add == [("downtown_walking_00", 0)] and len(store) == 20
