"""Training, evaluation and video inference on a CUDA device agree with CPU (skipped without one).

The CPU paths are tested elsewhere; these check what only a GPU run can show: the batches,
checkpoints and random state moved between devices, and the same numbers from either device.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import ModelConfig
from model.evaluate import evaluate
from model.infer import TrackInput, predict_tracks
from model.smpl import SMPL
from model.tcmr import TCMR
from model.train import DatasetSpec, TrainConfig, ValidationSpec, train
from pipeline.sample.store import write_sample_store
from storage.settings import Settings

GPU = "cuda"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stores")
    write_sample_store(root, "insta/train/base", [20, 18], seed=1, with_3d=False, with_smpl=False)
    write_sample_store(root, "3dpw/train/base", [24], seed=2)
    write_sample_store(root, "3dpw/test/base", [17, 23], seed=4)
    return root


def tiny_config(stores: Path) -> TrainConfig:
    return TrainConfig(
        title="cuda",
        store=str(stores),
        epochs=2,
        iterations_per_epoch=3,
        batch_2d=2,
        batch_3d=2,
        stride=1,
        num_workers=0,
        model={"hidden_size": 16, "n_layers": 1, "attention_size": 8},
        datasets_2d=[DatasetSpec(group="insta/train/base", use_smpl=False, use_3d=False)],
        datasets_3d=[DatasetSpec(group="3dpw/train/base")],
        validation=ValidationSpec(group="3dpw/test/base", dataset="3dpw", max_windows=8),
    )


def step_losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss_total"] for row in rows if row["kind"] == "step"}


def test_training_on_cuda_resumes_and_its_checkpoint_scores_alike_on_both_devices(
    stores: Path, base_data: Path, tmp_path: Path
) -> None:
    settings = Settings(base_data=base_data, device=GPU)
    full = train(tiny_config(stores), tmp_path / "full", settings, progress=False)
    losses = step_losses(tmp_path / "full")
    assert full.steps == 6 and sorted(losses) == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(v) for v in losses.values())

    part = tmp_path / "part"
    train(tiny_config(stores), part, settings, progress=False, max_steps=4)
    train(tiny_config(stores), part, settings, resume=part / "last.pt", progress=False)
    resumed = step_losses(part)
    # The CUDA random state travels in the checkpoint; cuDNN's GRU kernels may reorder sums.
    for step in (5, 6):
        assert resumed[step] == pytest.approx(losses[step], rel=1e-3), step

    scores = {
        device: evaluate(
            full.last_checkpoint,
            str(stores),
            "3dpw/test/base",
            tmp_path / device,
            settings=settings,
            device=device,
        ).metrics
        for device in ("cpu", GPU)
    }
    assert scores[GPU]["frames"] == scores["cpu"]["frames"] == 40
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
