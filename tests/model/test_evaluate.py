"""The evaluation protocol: windows per frame, mid-frame mapping, joint rules, metrics, reports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import save_checkpoint
from model.config import ModelConfig
from model.data import EvalDataset
from model.evaluate import (
    JOINT_RULES,
    MPII3D_TEST_IN_SPIN,
    FramePredictions,
    compare_runs,
    evaluate,
    predict_frames,
    score,
)
from model.smpl import SMPL
from model.tcmr import TCMR
from pipeline.sample.store import write_sample_store
from storage.errors import TcmrError
from storage.reader import open_store
from storage.settings import Settings

TINY = ModelConfig(hidden_size=16, n_layers=1, attention_size=8)


@pytest.fixture(scope="module")
def tiny_model(base_data: Path, smpl: SMPL) -> TCMR:
    torch.manual_seed(0)
    model = TCMR(TINY, base_data / "smpl_mean_params.npz").set_smpl(smpl)
    return model.eval()


def frames_of(pred: np.ndarray, gt: np.ndarray, sequence: np.ndarray, valid=None):
    n = len(pred)
    return FramePredictions(
        sequence=sequence,
        pred_joints=pred,
        gt_joints=gt,
        valid=np.ones(n, bool) if valid is None else valid,
        rotmat=np.zeros((n, 24, 3, 3), np.float32),
        betas=np.zeros((n, 10), np.float32),
        gt_theta=np.zeros((n, 85), np.float32),
        scores=np.zeros((n, 3), np.float32),
    )


def test_known_offset_gives_known_mpjpe_and_zero_accel() -> None:
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(30, 14, 3))
    pred = gt + np.array([5.0, -2.0, 1.0])  # a global translation: removed by the pelvis
    pred[:, 0, 0] += 0.014  # one non-pelvis joint 14 mm off in every frame
    result = score(frames_of(pred, gt, np.zeros(30, int)), JOINT_RULES["3dpw"], "tcmr", ["s"])
    assert result.summary["mpjpe"] == pytest.approx(1.0, abs=1e-9)
    assert result.summary["accel_error"] == pytest.approx(0.0, abs=1e-9)
    assert result.summary["frames"] == 30


def test_similarity_transform_is_removed_by_pa_mpjpe() -> None:
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(5, 14, 3))
    angle = 0.7
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    pred = 1.3 * gt @ rot.T + 0.2
    result = score(frames_of(pred, gt, np.zeros(5, int)), JOINT_RULES["h36m"], "tcmr", ["s"])
    assert result.summary["pa_mpjpe"] == pytest.approx(0.0, abs=1e-6)
    assert result.summary["mpjpe"] > 10.0


def reference_metrics(pred, gt, sequence, valid, pelvis) -> dict[str, float]:
    """§10.3 written out frame by frame: per sequence, masks, frame-weighted means."""
    errors, accels = [], []
    for seq in sorted(set(sequence.tolist())):
        idx = [i for i in range(len(sequence)) if sequence[i] == seq]
        p = [pred[i] - pred[i][pelvis].mean(axis=0) for i in idx]
        g = [gt[i] - gt[i][pelvis].mean(axis=0) for i in idx]
        if not any(valid[i] for i in idx):
            continue
        for k, i in enumerate(idx):
            if valid[i]:
                errors.append(
                    np.mean([np.linalg.norm(p[k][j] - g[k][j]) for j in range(len(p[k]))])
                )
            if 0 < k < len(idx) - 1 and valid[i]:
                a_p = p[k - 1] - 2 * p[k] + p[k + 1]
                a_g = g[k - 1] - 2 * g[k] + g[k + 1]
                accels.append(np.mean([np.linalg.norm(a_p[j] - a_g[j]) for j in range(len(a_p))]))
    return {"mpjpe": 1000 * np.mean(errors), "accel_error": 1000 * np.mean(accels)}


def test_frame_weighted_means_with_valid_masks_match_a_plain_loop() -> None:
    rng = np.random.default_rng(2)
    sequence = np.repeat([0, 1, 2], [20, 33, 16])
    gt = rng.normal(size=(69, 17, 3)) * 0.3
    pred = gt + rng.normal(size=gt.shape) * 0.02
    valid = rng.random(69) > 0.3
    valid[53:69] = False  # sequence 2 has no valid frame: skipped entirely
    rule = JOINT_RULES["mpii3d"]
    result = score(frames_of(pred, gt, sequence, valid), rule, "tcmr", ["a", "b", "c"])
    expected = reference_metrics(pred, gt, sequence, valid, [rule.pelvis])
    assert result.summary["mpjpe"] == pytest.approx(expected["mpjpe"], abs=1e-9)
    assert result.summary["accel_error"] == pytest.approx(expected["accel_error"], abs=1e-9)
    assert [row["sequence"] for row in result.sequences] == ["a", "b"]
    assert result.summary["frames"] == int(valid.sum())


def test_vibe_protocol_counts_boundary_accelerations() -> None:
    gt = np.zeros((32, 14, 3))
    pred = gt.copy()
    pred[16:, 0, 0] = 0.014  # second sequence offset: constant within each sequence
    sequence = np.repeat([0, 1], 16)
    tcmr = score(frames_of(pred, gt, sequence), JOINT_RULES["3dpw"], "tcmr", ["a", "b"])
    vibe = score(frames_of(pred, gt, sequence), JOINT_RULES["3dpw"], "vibe", ["a", "b"])
    assert tcmr.summary["accel_error"] == pytest.approx(0.0)
    assert vibe.summary["accel_error"] > 0.0  # the jump at the boundary counts under VIBE
    assert vibe.summary["accel"] > 0.0


def padded_window(rows: np.ndarray, k: int) -> np.ndarray:
    """Official eval window of frame k: 16 frames around it, or 16 copies at the edges."""
    if 8 <= k <= len(rows) - 8:
        return rows[k - 8 : k + 8]
    return np.repeat(rows[k], 16)


def test_one_window_per_frame_mid_frame_and_edge_padding(tiny_model: TCMR, tmp_path: Path) -> None:
    arrays = write_sample_store(tmp_path, "3dpw/test/base", [20, 10, 17], seed=3)
    store = open_store(str(tmp_path), "3dpw/test/base")
    frames = predict_frames(tiny_model, EvalDataset(store), JOINT_RULES["3dpw"], batch_size=5)
    # the 10-frame sequence is skipped; every other frame has exactly one prediction
    assert frames.sequence.tolist() == [0] * 20 + [2] * 17
    expected_gt = np.concatenate([arrays[0]["joints3d"], arrays[2]["joints3d"]])[:, 25:39, :3]
    np.testing.assert_array_equal(frames.gt_joints, expected_gt)
    # predictions equal the model on hand-built windows (frame k at the mid position)
    features = np.concatenate([arrays[0]["features"], arrays[2]["features"]])
    features = features.astype(np.float16).astype(np.float32)
    windows = []
    for first, length in ((0, 20), (20, 17)):
        rows = np.arange(first, first + length)
        windows += [features[padded_window(rows, k)] for k in range(length)]
    with torch.inference_mode():
        out, _ = tiny_model(torch.from_numpy(np.stack(windows)), j14=True)
    np.testing.assert_allclose(frames.pred_joints, out["kp_3d"].numpy(), atol=1e-5)


def test_batches_read_in_worker_processes_give_the_same_predictions(
    tiny_model: TCMR, tmp_path: Path
) -> None:
    write_sample_store(tmp_path, "3dpw/test/base", [20, 17], seed=3)
    data = EvalDataset(open_store(str(tmp_path), "3dpw/test/base"))
    here = predict_frames(tiny_model, data, JOINT_RULES["3dpw"], batch_size=6)
    workers = predict_frames(tiny_model, data, JOINT_RULES["3dpw"], batch_size=6, num_workers=2)
    first = predict_frames(tiny_model, data, JOINT_RULES["3dpw"], batch_size=4, limit=9)
    for name, value in vars(here).items():
        np.testing.assert_array_equal(getattr(workers, name), value, err_msg=name)
        np.testing.assert_allclose(getattr(first, name), value[:9], atol=1e-6, err_msg=name)


def test_mpii3d_joints_are_the_17_test_joints_and_valid_masks(
    tiny_model: TCMR, tmp_path: Path
) -> None:
    arrays = write_sample_store(
        tmp_path, "mpii3d/val/base", [18], seed=4, with_smpl=False, eval_keep_valid=False
    )
    store = open_store(str(tmp_path), "mpii3d/val/base")
    frames = predict_frames(tiny_model, EvalDataset(store), JOINT_RULES["mpii3d"], batch_size=4)
    assert frames.pred_joints.shape == (18, 17, 3)
    gt = arrays[0]["joints3d"][:, list(MPII3D_TEST_IN_SPIN), :3]
    np.testing.assert_array_equal(frames.gt_joints, gt)
    assert MPII3D_TEST_IN_SPIN[JOINT_RULES["mpii3d"].pelvis] == 39  # `hip`


def test_evaluate_writes_metrics_csv_and_plots(
    tiny_model: TCMR, base_data: Path, tmp_path: Path
) -> None:
    write_sample_store(tmp_path / "stores", "3dpw/test/base", [18, 21], seed=5)
    ckpt = save_checkpoint(tmp_path / "ours.pt", tiny_model, TINY, {"test": True})
    settings = Settings(base_data=base_data, store=str(tmp_path / "stores"), device="cpu")
    result = evaluate(
        ckpt, str(tmp_path / "stores"), "3dpw/test/base", tmp_path / "out",
        batch_size=7, filter_name="slerp", settings=settings,
    )  # fmt: skip
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for key in ("mpjpe", "pa_mpjpe", "mpvpe", "accel_error"):
        assert np.isfinite(metrics[key]) and metrics[key] > 0, key
    assert metrics["frames"] == 39 and metrics["protocol"] == "tcmr"
    assert metrics["filter"] == "slerp" and metrics["unfiltered"]["frames"] == 39
    assert metrics["provenance"]["group"] == "3dpw/test/base"
    assert len(metrics["provenance"]["checkpoint_sha256"]) == 64
    assert result.metrics["mpjpe"] == metrics["mpjpe"]
    with open(tmp_path / "out" / "sequences.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["sequence"] for row in rows] == ["seq0", "seq1"]
    frames = np.array([int(r["frames"]) for r in rows])
    means = np.array([float(r["mpjpe"]) for r in rows])
    assert (frames * means).sum() / frames.sum() == pytest.approx(metrics["mpjpe"], rel=1e-6)
    for name in ("accel_error.png", "attention.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot = compare_runs(
        [tmp_path / "out", tmp_path / "out"], "seq1", tmp_path / "cmp.png", ["a", "b"]
    )
    assert plot.stat().st_size > 0


def test_evaluate_vibe_protocol_on_h36m(tiny_model: TCMR, base_data: Path, tmp_path: Path) -> None:
    write_sample_store(tmp_path / "stores", "h36m/test/base", [17], seed=6, with_smpl=False)
    ckpt = save_checkpoint(tmp_path / "ours.pt", tiny_model, TINY, {"test": True})
    settings = Settings(base_data=base_data, device="cpu")
    result = evaluate(
        ckpt, str(tmp_path / "stores"), "h36m/test/base", tmp_path / "out",
        protocol="vibe", batch_size=32, settings=settings,
    )  # fmt: skip
    assert result.metrics["frames"] == 16  # VIBE protocol: frames past 16*floor(17/16) dropped
    assert "mpvpe" not in result.metrics and result.metrics["accel"] >= 0


def test_unknown_dataset_is_a_clear_error(base_data: Path, tmp_path: Path) -> None:
    with pytest.raises(TcmrError, match="--dataset"):
        evaluate(
            tmp_path / "x.pt", str(tmp_path), "insta/train/base", tmp_path / "out",
            settings=Settings(base_data=base_data, device="cpu"),
        )  # fmt: skip
