"""Small sample inputs for the flow tests: base data and Penn Action in their real formats.

Written once per session under pytest's base temp folder (a marker file says it is
complete), whichever test module asks first; a flow test copies what it changes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.sample.base_data import write_base_data
from pipeline.sample.penn_action import write_penn_action


def penn_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`<root>/base_data` and `<root>/pennaction` (train: 2 sequences, test: 1)."""
    root = tmp_path_factory.getbasetemp() / "flows-sample"
    done = root / ".complete"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        write_base_data(root / "base_data", 0)
        write_penn_action(root, seed=0)
        done.touch()
    return root


def copy_sample(sample: Path, target: Path) -> Path:
    """A private copy of the sample a test may change (base data is linked, not copied)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(sample / "pennaction", target / "pennaction")
    (target / "base_data").symlink_to(sample / "base_data")
    return target
