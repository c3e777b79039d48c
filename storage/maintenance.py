"""Keeping stores small and current: refresh plans, compaction, garbage collection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from storage.backend import Location, location
from storage.reader import Store, open_store
from storage.writer import StoreWriter, commit_lock, read_pointer

Key = tuple[str, int]


@dataclass
class RefreshPlan:
    """What an incremental refresh must do, from content hashes old and new."""

    add: list[Key] = field(default_factory=list)
    replace: list[Key] = field(default_factory=list)
    drop: list[Key] = field(default_factory=list)
    unchanged: list[Key] = field(default_factory=list)

    @property
    def to_write(self) -> list[Key]:
        """Sequences to parse, extract and `add` again (new or changed)."""
        return self.add + self.replace


def plan_refresh(stored: Mapping[Key, str], incoming: Mapping[Key, str]) -> RefreshPlan:
    """Compare `content_hashes(root, group)` with the hashes of the current sources."""
    plan = RefreshPlan()
    for key, digest in incoming.items():
        if key not in stored:
            plan.add.append(key)
        elif stored[key] != digest:
            plan.replace.append(key)
        else:
            plan.unchanged.append(key)
    plan.drop = [key for key in stored if key not in incoming]
    return plan


STAGING = ".staging"
"""Folder below the root where a build stages a group's sequences until it commits them."""


def collect_garbage(root: str | Location, group: str, spare_staged: bool = False) -> list[str]:
    """Delete segments and indexes the committed version does not reference.

    Run it when no writer is active on the group: an uncommitted segment of a running
    writer looks exactly like the leftovers of a killed one (that writer's commit is then
    refused, not published without its rows). With `spare_staged`, unreferenced segments
    are kept while the group has a staged build (files under `<root>/.staging/<group>`): one
    running, or killed and about to resume, adopts them at its commit.
    """
    loc = location(root)
    group = group.strip("/")
    with commit_lock(loc, group):
        pointer = read_pointer(loc, group)
        if pointer is None:
            return []
        fs, base = loc.filesystem()
        live = {"segments": set(pointer["segments"]), "index": {pointer["index"].split("/")[1]}}
        staged = f"{base}/{STAGING}/{group}"
        if spare_staged and fs.exists(staged) and fs.ls(staged, detail=False):
            live.pop("segments")
        removed = []
        for folder, keep in live.items():
            prefix = f"{base}/{group}/{folder}"
            if not fs.exists(prefix):
                continue
            for entry in fs.ls(prefix, detail=False):
                name = entry.rstrip("/").rsplit("/", 1)[-1]
                if name not in keep and fs.isdir(entry):
                    loc.delete(f"{group}/{folder}/{name}")
                    removed.append(f"{folder}/{name}")
    return sorted(removed)


def compact(
    root: str | Location, group: str, storage_options: dict[str, Any] | None = None
) -> Store:
    """Rewrite the live sequences densely into one segment, commit, then drop the rest.

    The rest spares a staged build's segments (see `collect_garbage`); a writer that
    commits to the group meanwhile makes this commit a StoreError that changes nothing.
    """
    loc = location(root, storage_options)
    old = open_store(loc, group)
    writer = StoreWriter(
        loc, group, old.provenance, mode="overwrite", eval_keep_valid=old.eval_keep_valid
    )
    for i, seq in enumerate(old.sequences):
        writer.add(seq.name, seq.person_id, seq.fps, seq.content_hash, old.sequence_arrays(i))
    writer.commit()
    collect_garbage(loc, group, spare_staged=True)
    return open_store(loc, group)
