"""Synthetic sample data in the datasets' and base data's real on-disk formats.

`write_sample_data(out)` writes the base data (`out/base_data`) and every dataset in its
release layout under `out/<folder>/`; the main-job command and the tests read it.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from storage.errors import TcmrError

STAGING_PREFIX = ".sample-staging-"
SAMPLE_MARKER = ".tcmr-sample"
"""Empty file in each folder `write_sample_data` wrote: only such folders are ever replaced."""

# dataset -> (writer module, writer function, folders it writes under `out`).
WRITERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "3dpw": ("pipeline.sample.pw3d", "write_3dpw", ("3DPW",)),
    "mpii3d": ("pipeline.sample.mpii3d", "write_mpii3d", ("mpi_inf_3dhp",)),
    "h36m": ("pipeline.sample.h36m", "write_h36m", ("h36m", "h36m_raw")),
    "insta": ("pipeline.sample.insta", "write_insta", ("insta_variety",)),
    "pennaction": ("pipeline.sample.penn_action", "write_penn_action", ("pennaction",)),
    "posetrack": ("pipeline.sample.posetrack", "write_posetrack", ("posetrack", "posetrack2017")),
}


def write_sample(out: Path, seed: int = 0) -> dict[str, Any]:
    """Write the whole sample; returns each writer's planted truth (and the base-data paths)."""
    from pipeline.sample.base_data import write_base_data

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, Any] = {"base_data": write_base_data(out / "base_data", seed)}
    for dataset, (module, function, _) in WRITERS.items():
        truth[dataset] = getattr(importlib.import_module(module), function)(out, seed=seed)
    return truth


def sample_folders(out: Path) -> dict[str, Path]:
    """Each dataset folder of a sample written under `out` (and `base_data`), by name."""
    folders = {"base_data": Path(out) / "base_data"}
    for _, _, names in WRITERS.values():
        folders.update({name: Path(out) / name for name in names})
    return folders


def write_sample_data(out: Path, seed: int = 0) -> dict[str, Path]:
    """Write the whole sample; returns each dataset folder (and `base_data`) by name.

    The sample is written into a hidden staging folder under `out`, then each dataset folder
    is swapped into place: an interrupted run leaves every folder either as it was or whole,
    never half-written. Staging left by an interrupted run is removed at the next one.
    """
    out = Path(out)
    _refuse_foreign_folders(out)
    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(leftover)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    try:
        write_sample(staging / "new", seed)
        for name, folder in sample_folders(staging / "new").items():
            (folder / SAMPLE_MARKER).touch()
            _swap_in(folder, out / name, staging / "old" / name)
    finally:
        shutil.rmtree(staging)
    return sample_folders(out)


def _refuse_foreign_folders(out: Path) -> None:
    """Refuse, before writing anything, to replace a folder the sample did not write.

    `out` may be a real data root (`data/` holding the licensed 3DPW/, base_data/ ...): a
    sample written there would swap those folders out and delete them.
    """
    for target in sample_folders(out).values():
        if target.is_dir() and any(target.iterdir()) and not (target / SAMPLE_MARKER).exists():
            raise TcmrError(
                f"{target}: a folder that `tcmr sample-data` did not write (no {SAMPLE_MARKER}) "
                "would be replaced by the sample; give a new folder for OUT, or move it away"
            )


def _swap_in(new: Path, target: Path, trash: Path) -> None:
    """Put `new` at `target` by renames; an earlier `target` goes to `trash` (removed later)."""
    if target.exists():
        trash.parent.mkdir(parents=True, exist_ok=True)
        target.rename(trash)
    new.rename(target)
