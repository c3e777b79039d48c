"""The synthetic official TCMR checkpoint has the released layout (tcmr.md §3.1-3.2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.sample.tcmr_checkpoint import write_official_tcmr_checkpoint

NUMPY_SCALAR = [np._core.multiarray.scalar, np.dtype, np.dtypes.Float64DType]


def test_layout_matches_the_specification(tmp_path: Path) -> None:
    v_template = np.full((6890, 3), 0.5)
    path = write_official_tcmr_checkpoint(
        tmp_path / "tcmr.pth.tar", seed=3, smpl_arrays={"v_template": v_template}
    )
    assert not list(tmp_path.glob("*.tmp"))
    # Official files pickle a numpy float; plain weights_only refuses it, by name.
    with pytest.raises(Exception, match=r"numpy\._core\.multiarray\.scalar"):
        torch.load(path, weights_only=True)
    with torch.serialization.safe_globals(
        [np._core.multiarray.scalar, np.dtype, np.dtypes.Float64DType]
    ):
        checkpoint = torch.load(path, weights_only=True)
    assert set(checkpoint) == {
        "epoch",
        "gen_state_dict",
        "performance",
        "gen_optimizer",
        "disc_motion_state_dict",
        "disc_motion_optimizer",
    }
    state = checkpoint["gen_state_dict"]
    assert len(state) == 71
    assert sum(key.startswith("encoder.") for key in state) == 46
    assert sum(key.startswith("regressor.smpl.") for key in state) == 12
    expected = {
        "encoder.gru_cur.weight_ih_l1_reverse": (3072, 2048),
        "encoder.gru_bef.weight_ih_l1": (3072, 1024),
        "encoder.gru_aft.bias_hh_l0": (3072,),
        "encoder.linear_cur.weight": (2048, 2048),
        "encoder.attention.attention.0.weight": (256, 768),
        "encoder.attention.attention.4.bias": (3,),
        "regressor.fc1.weight": (1024, 2205),
        "regressor.init_pose": (1, 144),
        "regressor.smpl.posedirs": (207, 20670),
        "regressor.smpl.faces_tensor": (13776, 3),
        "regressor.smpl.J_regressor_extra": (9, 6890),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert state["regressor.smpl.faces_tensor"].dtype == torch.int64
    torch.testing.assert_close(state["regressor.smpl.v_template"], torch.full((6890, 3), 0.5))
    assert float(checkpoint["performance"]) == pytest.approx(52.7)
