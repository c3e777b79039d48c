"""What the CUDA paths rely on, checked without a GPU.

Smoothed video inference runs SMPL in bounded chunks, with the results of one pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model.config import ModelConfig
from model.infer import TrackInput, predict_tracks
from model.smpl import SMPL
from model.tcmr import TCMR

CONFIGS = {
    "tcmr": ModelConfig(hidden_size=8, attention_size=4),
    "no_forecast": ModelConfig(hidden_size=8, pose_forecast=False),
    "all_frames": ModelConfig(hidden_size=8, pose_forecast=False, all_frames=True),
}


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
