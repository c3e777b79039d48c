"""The one sha256 of files used everywhere: provenance, downloads, content hashes.

Store provenance, download markers and per-sequence content hashes are compared with each
other across runs, so they must all be computed the same way, by these two functions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

BLOCK = 1 << 20


def _update(digest: hashlib._Hash, path: Path | str) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of one file's bytes, read in 1 MiB blocks (large checkpoints, archives)."""
    digest = hashlib.sha256()
    _update(digest, path)
    return digest.hexdigest()


def hash_files(paths: Iterable[Path | str], extra: bytes = b"") -> str:
    """Hex sha256 of `extra` followed by the files' bytes in order: a source content hash."""
    digest = hashlib.sha256(extra)
    for path in paths:
        _update(digest, path)
    return digest.hexdigest()
