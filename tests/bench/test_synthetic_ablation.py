"""The ablation benchmark's verdict is computed from its figures, never fixed in the text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.synthetic_ablation import (
    backbone,
    frame_table,
    make_split,
    mean_sd,
    metrics,
    pretrain_regressor,
    single_frames,
    verdict,
    with_joints,
)
from model.config import ModelConfig
from model.losses import TCMRLoss
from model.regressor import Regressor, load_spin_regressor
from model.smpl import SMPL
from model.tcmr import build_model
from pipeline.sample.base_data import write_base_data
from storage.settings import Settings


def runs(pairs: list[tuple[float, float]]) -> list[dict[str, float]]:
    return [{"pa_mpjpe": pa, "accel_error": accel} for pa, accel in pairs]


BASE = runs([(80.0, 100.0), (82.0, 110.0), (84.0, 90.0)])
MEAN_POSE = [150.0, 148.0, 152.0]
PER_FRAME = [70.0, 71.0, 72.0]


def judge(tcmr: list[dict[str, float]]) -> list[str]:
    return verdict(BASE, tcmr, MEAN_POSE, PER_FRAME)


def test_mean_sd_is_the_sample_sd() -> None:
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_sd([5.0]) == (5.0, 0.0)


def test_far_lower_accel_at_similar_pa_is_reproduced() -> None:
    # paired differences +1, -1, +1: mean 0.33, sd 1.15, standard error 0.67
    learning, ratio, _, outcome = judge(runs([(81.0, 30.0), (81.0, 33.0), (85.0, 27.0)]))
    assert "baseline 82.0, TCMR 82.3 mm vs mean pose 150.0 and per-frame ridge 71.0" in learning
    assert "accel error x0.30" in ratio
    assert "+0.33 mm (paired per seed +1.0, -1.0, +1.0; sd 1.15, standard error 0.67" in ratio
    assert "within seed noise" in ratio
    assert outcome.endswith(": reproduced")


def test_consistently_worse_pa_reproduces_only_the_accel_half() -> None:
    # +5, +4, +6 mm: each seed worse, though less than twice one model's seed sd (2 mm)
    _, ratio, _, outcome = judge(runs([(85.0, 30.0), (86.0, 30.0), (90.0, 30.0)]))
    assert "worse beyond seed noise" in ratio
    assert outcome.endswith("only the accel half reproduced (PA-MPJPE worse)")


def test_accel_not_halved_is_not_reproduced() -> None:
    _, ratio, _, outcome = judge(runs([(80.0, 60.0), (82.0, 60.0), (84.0, 60.0)]))
    assert "x0.60" in ratio
    assert outcome.endswith("NOT reproduced (accel error not far lower)")


def test_a_model_no_better_than_the_mean_pose_makes_it_inconclusive() -> None:
    _, _, _, outcome = judge(runs([(149.0, 10.0), (150.0, 10.0), (151.0, 10.0)]))
    assert "inconclusive" in outcome


def test_one_seed_has_no_noise_estimate() -> None:
    _, ratio, _, outcome = verdict(BASE[:1], runs([(79.0, 20.0)]), [150.0], [70.0])
    assert "one seed, no noise estimate" in ratio
    assert outcome.endswith(": reproduced")


def test_pa_mpjpe_is_split_by_whether_the_frame_feature_was_dropped() -> None:
    rng = np.random.default_rng(0)
    test_set = []
    for frames in (20, 24):
        joints = rng.normal(scale=0.3, size=(frames, 14, 3)).astype(np.float32)
        dropped = np.zeros(frames, bool)
        dropped[[3, 11]] = True
        test_set.append({"pose": np.zeros((frames, 72)), "joints14": joints, "dropped": dropped})
    pred = np.concatenate([s["joints14"] for s in test_set]).copy()
    hit = np.concatenate([s["dropped"] for s in test_set])
    pred[hit] += rng.normal(scale=0.1, size=(int(hit.sum()), 14, 3)).astype(np.float32)
    scores = metrics(pred, test_set)
    assert scores["pa_kept"] < 1e-3
    assert scores["pa_dropped"] > 20.0
    # the overall mean is the frame-weighted mix of the two
    assert scores["pa_mpjpe"] == pytest.approx(scores["pa_dropped"] * 4 / 44, rel=1e-4)


def test_pretraining_fits_the_regressor_per_frame_and_fits_tcmr(tmp_path: Path) -> None:
    write_base_data(tmp_path, seed=0)
    settings = Settings(base_data=tmp_path, device="cpu")
    smpl = SMPL.from_settings("neutral", settings)
    rng = np.random.default_rng(3)
    seqs = with_joints(smpl, make_split(rng, 4, 24, backbone(), noise=0.3, drop=0.15))
    regressor = Regressor(settings.base_data_file("smpl_mean_params.npz"))
    load_spin_regressor(regressor, settings.base_data_file("spin_model_checkpoint.pth.tar"))
    table = frame_table(seqs)
    rows = np.arange(len(table["features"]))

    def frame_loss() -> float:
        regressor.eval()
        with torch.inference_mode():
            out = regressor(torch.from_numpy(table["features"]), smpl)
            pred = {key: value[:, None] for key, value in out.items()}
            return float(TCMRLoss()(pred, single_frames(table, rows))["total"])

    before = frame_loss()
    head = pretrain_regressor(regressor, smpl, seqs, steps=15, batch=8, lr=1e-3)
    assert frame_loss() < 0.9 * before
    model = build_model(ModelConfig(hidden_size=8, attention_size=8), settings)
    model.regressor.load_state_dict(head)  # the start both models of the benchmark share
    torch.testing.assert_close(model.regressor.fc1.weight, regressor.fc1.weight)
