"""Training, evaluation and video inference on a CUDA device agree with CPU (skipped without one).

The CPU paths are tested elsewhere; these check what only a GPU run can show: the batches,
checkpoints and random state moved between devices, and the same numbers from either device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_train import step_losses, tiny_train_config

from model.config import ModelConfig
from model.evaluate import evaluate
from model.infer import TrackInput, predict_tracks
from model.smpl import SMPL
from model.tcmr import TCMR
from model.train import train
from storage.settings import Settings

GPU = "cuda"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_training_on_cuda_resumes_and_its_checkpoint_scores_alike_on_both_devices(
    train_stores: Path, base_data: Path, tmp_path: Path
) -> None:
    settings = Settings(base_data=base_data, device=GPU)
    full = train(tiny_train_config(train_stores), tmp_path / "full", settings, progress=False)
    losses = step_losses(tmp_path / "full")
    assert full.steps == 6 and sorted(losses) == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(v) for v in losses.values())

    part = tmp_path / "part"
    train(tiny_train_config(train_stores), part, settings, progress=False, max_steps=4)
    train(tiny_train_config(train_stores), part, settings, resume=part / "last.pt", progress=False)
    resumed = step_losses(part)
    # The CUDA random state travels in the checkpoint; cuDNN's GRU kernels may reorder sums.
    for step in (5, 6):
        assert resumed[step] == pytest.approx(losses[step], rel=1e-3), step

    scores = {
        device: evaluate(
            full.last_checkpoint,
            str(train_stores),
            "3dpw/val/base",
            tmp_path / device,
            settings=settings,
            device=device,
        ).metrics
        for device in ("cpu", GPU)
    }
    assert scores[GPU]["frames"] == scores["cpu"]["frames"] == 17
    for key in ("mpjpe", "pa_mpjpe", "mpvpe", "accel_error"):
        # TF32 may run the GRU's matmuls on the GPU: about 1e-3 relative.
        assert scores[GPU][key] == pytest.approx(scores["cpu"][key], rel=2e-3, abs=0.05), key


def test_video_inference_on_cuda_matches_cpu(base_data: Path, smpl: SMPL) -> None:
    torch.manual_seed(0)
    model = TCMR(ModelConfig(hidden_size=32, attention_size=16), base_data / "smpl_mean_params.npz")
    model.set_smpl(smpl).eval()
    rng = np.random.default_rng(0)
    length = 21
    bboxes = np.column_stack([rng.uniform(100, 200, (length, 2)), np.full((length, 2), 96.0)])
    features = rng.normal(size=(length, 2048)).astype(np.float32)
    tracks = [TrackInput(1, np.arange(length), bboxes, features)]

    cpu = predict_tracks(model, tracks, 320, 240, batch_size=8)[1]
    gpu = predict_tracks(model.to(GPU), tracks, 320, 240, batch_size=8)[1]
    for key in ("pred_cam", "orig_cam", "pose", "betas", "verts", "joints3d"):
        np.testing.assert_allclose(gpu[key], cpu[key], atol=2e-3, rtol=2e-3, err_msg=key)
