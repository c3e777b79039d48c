"""`evaluate` on an imported official db reproduces the official evaluate.py loop (tcmr.md §10).

The reference below is written from the protocol text alone, with plain numpy/torch: rows
filtered by `valid` (3DPW), one window per frame with explicit edge padding, batches of 8,
the model's mid-frame outputs, J_regressor_h36m applied to the vertices here (3DPW) or the
17 `mpii3d_test` joints picked by name (MPI-INF-3DHP), pelvis alignment, per-frame
Procrustes, acceleration error per sequence without its ends, frame-weighted means.
"""

from __future__ import annotations

import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch

from model.checkpoint import load_model
from model.evaluate import EvalResult, evaluate
from model.smpl import SMPL
from pipeline.sample.tcmr_checkpoint import write_official_tcmr_checkpoint
from storage.importdb import import_db
from storage.layout import SPIN_JOINT_NAMES
from storage.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
from official_db import mpii3d_val_db, threedpw_db

H36M_TO_J14 = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]
MPII3D_TEST = [
    "headtop", "neck", "rshoulder", "relbow", "rwrist", "lshoulder", "lelbow", "lwrist",
    "rhip", "rknee", "rankle", "lhip", "lknee", "lankle", "hip", "Spine (H36M)", "Head (H36M)",
]  # fmt: skip
TOLERANCE_MM = 0.01


def windows_of(n: int) -> list[list[int]]:
    """split_into_chunks(is_train=False, match_vibe=False): frame k's window, padded at edges."""
    out = []
    for k in range(n):
        if 8 <= k <= n - 8:
            out.append(list(range(k - 8, k + 8)))
        else:
            out.append([k] * 16)
    return out


def run_model(model: torch.nn.Module, features: np.ndarray) -> dict[str, np.ndarray]:
    """Mid-frame outputs of every window of one sequence, 8 windows per batch."""
    windows = windows_of(len(features))
    verts, joints = [], []
    with torch.inference_mode():
        for lo in range(0, len(windows), 8):
            batch = torch.from_numpy(np.stack([features[w] for w in windows[lo : lo + 8]]))
            out, _ = model(batch, is_train=False, j14=False)
            verts.append(out["verts"].numpy())
            joints.append(out["kp_3d"].numpy())
    return {"verts": np.concatenate(verts), "joints49": np.concatenate(joints)}


def procrustes(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """batch_compute_similarity_transform for one frame: scale, rotation, translation."""
    s1, s2 = pred.T, gt.T
    mu1, mu2 = s1.mean(axis=1, keepdims=True), s2.mean(axis=1, keepdims=True)
    x1, x2 = s1 - mu1, s2 - mu2
    k = x1 @ x2.T
    u, _, vh = np.linalg.svd(k)
    v = vh.T
    z = np.eye(3)
    z[-1, -1] *= np.sign(np.linalg.det(u @ v.T))
    r = v @ z @ u.T
    scale = np.trace(r @ k) / (x1**2).sum()
    t = mu2 - scale * r @ mu1
    return (scale * r @ s1 + t).T


def sequence_errors(pred: np.ndarray, gt: np.ndarray, pelvis: list[int]) -> dict[str, np.ndarray]:
    """Per-frame MPJPE, PA-MPJPE and acceleration error (zeros at both ends) in mm."""
    pred = pred - pred[:, pelvis].mean(axis=1, keepdims=True)
    gt = gt - gt[:, pelvis].mean(axis=1, keepdims=True)
    mpjpe = np.sqrt(((pred - gt) ** 2).sum(-1)).mean(-1) * 1000
    aligned = np.stack([procrustes(p, g) for p, g in zip(pred, gt, strict=True)])
    pa = np.sqrt(((aligned - gt) ** 2).sum(-1)).mean(-1) * 1000
    accel = np.zeros(len(pred))
    a_pred = pred[:-2] - 2 * pred[1:-1] + pred[2:]
    a_gt = gt[:-2] - 2 * gt[1:-1] + gt[2:]
    accel[1:-1] = np.linalg.norm(a_pred - a_gt, axis=-1).mean(-1) * 1000
    return {"mpjpe": mpjpe, "pa_mpjpe": pa, "accel": accel}


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory, base_data: Path, smpl: SMPL):
    """An official-layout TCMR checkpoint and the model loaded from it."""
    path = write_official_tcmr_checkpoint(tmp_path_factory.mktemp("ckpt") / "tcmr.pth.tar", 3)
    return path, load_model(path, smpl).eval()


def import_and_evaluate(
    db: dict, path: Path, dataset: str, split: str, checkpoint: Path, base_data: Path
) -> EvalResult:
    """Write `db` as the official joblib file, import it, and evaluate at the official batch 8."""
    joblib.dump(db, path)
    stores, group = str(path.parent / "s"), f"{dataset}/{split}/base"
    import_db(path, dataset, split, stores, group)
    settings = Settings(base_data=base_data, device="cpu")
    return evaluate(checkpoint, stores, group, path.parent / "out", batch_size=8, settings=settings)


def test_3dpw_matches_the_official_loop(
    tmp_path: Path, base_data: Path, smpl: SMPL, official
) -> None:
    runs = {"outdoors_b_0": 21, "downtown_a_1": 18, "short_c_0": 12, "gaps_d_0": 18}
    path = tmp_path / "3dpw_test_db.pt"
    db = threedpw_db(path, runs, seed=7)
    valid = np.ones(69, dtype=bool)
    valid[[7, 8, 12]] = False  # inside outdoors_b_0: the rest become consecutive
    valid[[21, 38]] = False  # first and last frame of downtown_a_1 (18 -> 16)
    valid[[52, 57, 68]] = False  # gaps_d_0: 18 -> 15 usable frames, skipped
    db["valid"] = valid
    ckpt, model = official
    result = import_and_evaluate(db, path, "3dpw", "test", ckpt, base_data)

    regressor = np.load(base_data / "J_regressor_h36m.npy").astype(np.float32)
    names = db["vid_name"]
    per_frame: dict[str, list[np.ndarray]] = {"mpjpe": [], "pa_mpjpe": [], "accel": [], "pve": []}
    for name in np.unique(names):
        rows = np.flatnonzero((names == name) & valid)
        if len(rows) < 16:
            continue
        out = run_model(model, db["features"][rows])
        pred = np.einsum("jv,nvc->njc", regressor, out["verts"])[:, H36M_TO_J14]
        errors = sequence_errors(pred.astype(np.float64), db["joints3D"][rows], [2, 3])
        with torch.inference_mode():
            gt_verts = smpl.forward_axis_angle(
                torch.from_numpy(db["shape"][rows]).float(),
                torch.from_numpy(db["pose"][rows]).float(),
            ).vertices.numpy()
        pve = np.sqrt(((out["verts"] - gt_verts) ** 2).sum(-1)).mean(-1) * 1000
        per_frame["mpjpe"].append(errors["mpjpe"])
        per_frame["pa_mpjpe"].append(errors["pa_mpjpe"])
        per_frame["accel"].append(errors["accel"][1:-1])
        per_frame["pve"].append(pve)
    expected = {key: float(np.concatenate(v).mean()) for key, v in per_frame.items()}

    metrics = result.metrics
    assert metrics["frames"] == 18 + 16 and metrics["sequences"] == 2
    assert metrics["mpjpe"] == pytest.approx(expected["mpjpe"], abs=TOLERANCE_MM)
    assert metrics["pa_mpjpe"] == pytest.approx(expected["pa_mpjpe"], abs=TOLERANCE_MM)
    assert metrics["mpvpe"] == pytest.approx(expected["pve"], abs=TOLERANCE_MM)
    assert metrics["accel_error"] == pytest.approx(expected["accel"], abs=TOLERANCE_MM)
    assert metrics["mpjpe"] > 100  # random weights: large, so agreement is not trivial


def test_mpii3d_matches_the_official_loop(
    tmp_path: Path, base_data: Path, smpl: SMPL, official
) -> None:
    runs = {"TS1": 18, "TS2": 16, "TS3": 9}
    path = tmp_path / "mpii3d_val_scale12_db.pt"
    db = mpii3d_val_db(path, runs, seed=8)
    valid = np.ones((43, 1))
    valid[[0, 5, 6, 17]] = 0  # TS1: first, two inside, last (still windowed, then masked)
    valid[18:34] = 0  # TS2 has no valid frame: skipped (subj6_seg0)
    db["valid_i"] = valid
    ckpt, model = official
    result = import_and_evaluate(db, path, "mpii3d", "val", ckpt, base_data)

    joints = [SPIN_JOINT_NAMES.index(name) for name in MPII3D_TEST]
    names = db["vid_name"]
    per_frame: dict[str, list[np.ndarray]] = {"mpjpe": [], "pa_mpjpe": [], "accel": []}
    for name in np.unique(names):
        rows = np.flatnonzero(names == name)  # all frames, invalid ones too
        ok = valid[rows, 0] > 0
        if len(rows) < 16 or not ok.any():
            continue
        out = run_model(model, db["features"][rows])
        pred = out["joints49"][:, joints].astype(np.float64)
        errors = sequence_errors(pred, db["joints3D"][rows][:, joints], [14])
        per_frame["mpjpe"].append(errors["mpjpe"][ok])
        per_frame["pa_mpjpe"].append(errors["pa_mpjpe"][ok])
        per_frame["accel"].append(errors["accel"][1:-1][ok[1:-1]])
    expected = {key: float(np.concatenate(v).mean()) for key, v in per_frame.items()}

    metrics = result.metrics
    assert metrics["frames"] == 14 and metrics["sequences"] == 1
    assert metrics["mpjpe"] == pytest.approx(expected["mpjpe"], abs=TOLERANCE_MM)
    assert metrics["pa_mpjpe"] == pytest.approx(expected["pa_mpjpe"], abs=TOLERANCE_MM)
    assert metrics["accel_error"] == pytest.approx(expected["accel"], abs=TOLERANCE_MM)
