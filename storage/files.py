"""Whole-file writes: a file appears complete or not at all.

A reader must never see half a file, and an interrupted run must not leave one behind that a
later run would mistake for finished (metrics, plots, markers, base data, sample fixtures).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Create the parent folder, `write(temporary)`, then move it to `path`; returns `path`.

    The temporary sibling keeps the suffix, since some writers pick the format by it
    (scipy's savemat appends `.mat` to a name without it), and carries the process id so
    concurrent writers of the same file never share one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_atomic_stream(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """`write_atomic` for a writer given the open file rather than its name.

    What it writes cannot depend on the temporary name: `torch.save` given a path names the
    folder inside its zip archive after that path, so the same checkpoint written twice
    (a different process id each time) would get two checksums.
    """

    def to_file(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            write(handle)

    return write_atomic(path, to_file)
