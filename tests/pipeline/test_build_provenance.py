"""What a build compares before it reuses a store: every input that changes a stored value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from pipeline.build import BuildRequest, plan_build
from pipeline.sample.base_data import write_base_data
from pipeline.sample.pw3d import write_3dpw
from storage.backend import STORE_ATTR
from storage.provenance import Provenance
from storage.writer import StoreWriter


def _sequence(length: int) -> dict[str, np.ndarray]:
    return {
        "features": np.ones((length, 2048), np.float32),
        "joints2d": np.zeros((length, 49, 3), np.float32),
        "joints3d": np.zeros((length, 49, 4), np.float32),
        "pose": np.zeros((length, 72), np.float32),
        "shape": np.zeros((length, 10), np.float32),
        "bbox": np.ones((length, 4), np.float32),
        "frame_index": np.arange(length),
        "valid": np.ones(length, bool),
        "has_smpl": np.ones(length, bool),
    }


def test_a_3dpw_store_is_rebuilt_when_the_body_model_changes(tmp_path: Path) -> None:
    """3DPW's 49 joints are computed from SMPL and the joint regressors in the base data.

    With the same release, checkpoint and recipe but another `J_regressor_extra.npy`, the
    stored joints are stale: the build must not call the store unchanged.
    """
    base_data = tmp_path / "base_data"
    written = write_base_data(base_data, seed=0)
    truth = write_3dpw(tmp_path / "raw", seed=0)
    request = BuildRequest(
        "3dpw",
        "test",
        truth.root,
        str(tmp_path / "stores"),
        written["spin_model_checkpoint.pth.tar"],
        base_data=base_data,
    )
    plan = plan_build(request)
    writer = StoreWriter(request.store, request.group, plan.provenance)
    writer.add("stand-in", 0, 30.0, "h", _sequence(16))  # as if the build had committed
    writer.commit()
    assert plan_build(request).result.status == "unchanged"

    regressor = np.load(written["J_regressor_extra.npy"])
    np.save(written["J_regressor_extra.npy"], regressor[::-1].copy())  # another regressor
    again = plan_build(request)

    assert again.result.status == "built" and not again.append
    assert again.provenance.label_model_sha256 != plan.provenance.label_model_sha256


def test_a_store_of_another_schema_version_is_rebuilt_not_an_error(tmp_path: Path) -> None:
    base_data = tmp_path / "base_data"
    written = write_base_data(base_data, seed=0)
    truth = write_3dpw(tmp_path / "raw", seed=0)
    checkpoint = written["spin_model_checkpoint.pth.tar"]
    request = BuildRequest(
        "3dpw", "test", truth.root, str(tmp_path / "stores"), checkpoint, base_data=base_data
    )
    writer = StoreWriter(request.store, request.group, Provenance(code_version="old"))
    writer.add("stand-in", 0, 30.0, "h", _sequence(16))
    writer.commit()
    group = zarr.open_group(request.store, path=request.group, mode="a")
    group.attrs.put({STORE_ATTR: dict(group.attrs[STORE_ATTR], schema_version=0)})

    plan = plan_build(request)

    assert plan.result.status == "built" and not plan.append
    assert plan.shards  # every sequence is extracted again
