"""What the CUDA paths rely on, checked without a GPU.

The meta device holds no data, and torch refuses to combine its tensors with CPU ones: a
forward pass that runs on meta creates every tensor on its input's device, as a CUDA run
needs. Smoothed video inference runs SMPL in bounded chunks, with the results of one pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import ModelConfig
from model.evaluate import JOINT_RULES, _gt_vertices, _select, _vertex_errors
from model.infer import TrackInput, predict_tracks
from model.smpl import SMPL
from model.tcmr import TCMR

CONFIGS = {
    "tcmr": ModelConfig(hidden_size=8, attention_size=4),
    "no_forecast": ModelConfig(hidden_size=8, pose_forecast=False),
    "all_frames": ModelConfig(hidden_size=8, pose_forecast=False, all_frames=True),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_makes_every_tensor_on_the_input_device(base_data: Path, name: str) -> None:
    smpl = SMPL(
        base_data / "SMPL_NEUTRAL.pkl",
        base_data / "J_regressor_extra.npy",
        base_data / "J_regressor_h36m.npy",
    )
    model = TCMR(CONFIGS[name], base_data / "smpl_mean_params.npz").set_smpl(smpl)
    parents = smpl.parents.tolist()
    meta = torch.device("meta")
    model.to(meta)
    assert {buffer.device for buffer in smpl.buffers()} == {meta}  # SMPL moves with the model
    # smplx walks the kinematic tree with Python indexing by its `parents` buffer, which needs
    # values; on CUDA that is a sync per joint, on meta impossible: give it back its values.
    smpl.parents = torch.tensor(parents)
    features = torch.zeros(2, 16, 2048, device=meta)

    train_out, _ = model.train()(features, is_train=True)
    assert {value.device for value in train_out.values()} == {meta}
    model.eval()
    for j14 in (False, True):
        out, scores = model(features, is_train=False, j14=j14)
        assert {value.device for value in out.values()} | {scores.device} == {meta}
    errors = _vertex_errors(out["verts"], _gt_vertices(smpl, torch.zeros(2, 85, device=meta)))
    assert errors.device == meta and errors.shape == (2,)
    assert _select(out["kp_3d"], JOINT_RULES["mpii3d"].pred_index).shape == (2, 17, 3)


def test_smoothing_runs_smpl_in_chunks_with_the_results_of_one_pass(
    base_data: Path, smpl: SMPL
) -> None:
    torch.manual_seed(0)
    model = TCMR(CONFIGS["tcmr"], base_data / "smpl_mean_params.npz").set_smpl(smpl).eval()
    rng = np.random.default_rng(5)
    length = 19
    bboxes = np.column_stack([rng.uniform(100, 200, (length, 2)), np.full((length, 2), 96.0)])
    track = TrackInput(1, np.arange(length), bboxes, rng.normal(size=(length, 2048)))
    whole = predict_tracks(model, [track], 320, 240, batch_size=64, smooth=True)[1]
    chunked = predict_tracks(model, [track], 320, 240, batch_size=4, smooth=True)[1]
    for key in ("pose", "betas", "verts", "joints3d"):
        assert chunked[key].shape == whole[key].shape, key
        np.testing.assert_allclose(chunked[key], whole[key], atol=1e-5, err_msg=key)
