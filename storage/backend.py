"""Where stores live: a local folder (the default) or any fsspec URL (s3://, gs://, ...).

The same two handles serve both cases: a zarr store for arrays and groups, and an fsspec
filesystem for the few whole-folder operations zarr has no API for (listing groups,
deleting unreferenced segments).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import zarr
import zarr.storage

from storage.errors import StoreError

STORE_ATTR = "tcmr_store"
"""Attribute key that marks a Zarr group as a tcmr store (and holds its pointer)."""


def is_url(root: str) -> bool:
    return "://" in root and not root.startswith("file://")


@dataclass(frozen=True)
class Location:
    """A store root plus the options to reach it; picklable, so workers can reopen it."""

    root: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def zarr_store(self, read_only: bool = False) -> zarr.abc.store.Store:
        if is_url(self.root):
            return zarr.storage.FsspecStore.from_url(
                self.root, storage_options=self.storage_options or None, read_only=read_only
            )
        path = Path(self.root.removeprefix("file://"))
        if not read_only:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as error:
                raise StoreError(
                    f"{self.root}: the store root is not a folder ({error}); give a folder or an "
                    "fsspec URL (field `store`)"
                ) from error
        return zarr.storage.LocalStore(path, read_only=read_only)

    def filesystem(self) -> tuple[fsspec.AbstractFileSystem, str]:
        """The fsspec filesystem and the root path inside it, with no listings cached yet.

        fsspec hands out one cached instance per options, and zarr writes through its own
        (async) instance, whose writes never reach this one's listings cache: without the
        reset a group, segment or index written since this process last listed a folder of
        an object store would stay invisible to `groups` and `collect_garbage`.
        """
        fs, path = fsspec.core.url_to_fs(self.root, **self.storage_options)
        fs.invalidate_cache()
        return fs, path.rstrip("/")

    def delete(self, relative: str) -> None:
        """Remove a folder below the root, if present."""
        fs, base = self.filesystem()
        target = f"{base}/{relative}"
        if fs.exists(target):
            fs.rm(target, recursive=True)

    def groups(self, max_depth: int = 4) -> list[str]:
        """Relative paths of the tcmr store groups below the root, sorted."""
        fs, base = self.filesystem()
        found: list[str] = []
        for depth in range(1, max_depth + 1):
            pattern = f"{base}/{'/'.join(['*'] * depth)}/zarr.json"
            for meta in fs.glob(pattern):
                try:
                    attrs = json.loads(fs.cat_file(meta)).get("attributes", {})
                except (OSError, ValueError):
                    continue
                if STORE_ATTR in attrs:
                    found.append(meta[len(base) + 1 : -len("/zarr.json")])
        return sorted(found)


def location(root: str | Location, storage_options: dict[str, Any] | None = None) -> Location:
    if isinstance(root, Location):
        return root
    return Location(str(root), dict(storage_options or {}))
