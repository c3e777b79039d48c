"""Whole-file writes for the sample writers: a file appears complete or not at all.

Readers under test must never see half a fixture, and an interrupted sample build must not
leave one behind that a later run would mistake for finished.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Create the parent folder, `write(temporary)`, then move it to `path`; returns `path`.

    The temporary sibling keeps the suffix, since some writers pick the format by it
    (scipy's savemat appends `.mat` to a name without it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
