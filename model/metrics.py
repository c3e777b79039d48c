"""The evaluation protocol's error metrics (tcmr.md §10.2-10.3), in plain numpy.

Inputs are in metres, outputs in millimetres, one value per frame, so results of many
sequences are aggregated frame-weighted (`frame_weighted_mean`) as the official script does.
Plain numpy keeps them usable on saved predictions without torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

M_TO_MM = 1000.0


def align_by_pelvis(joints: np.ndarray, pelvis_index: int | tuple[int, ...]) -> np.ndarray:
    """Subtract the pelvis (one joint, or the mean of several) from joints (..., J, 3)."""
    index = (pelvis_index,) if isinstance(pelvis_index, int) else tuple(pelvis_index)
    pelvis = joints[..., list(index), :].mean(axis=-2, keepdims=True)
    return joints - pelvis


def compute_similarity_transform(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Procrustes-align pred (N,J,3) onto gt (N,J,3): scale, rotation and translation per frame.

    The rotation comes from the SVD of the covariance with the sign of its determinant
    corrected, so a reflection is never used to fit the prediction.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    mu_pred = pred.mean(axis=1, keepdims=True)
    mu_gt = gt.mean(axis=1, keepdims=True)
    x = pred - mu_pred
    y = gt - mu_gt
    var_x = (x**2).sum(axis=(1, 2))
    cov = np.einsum("nji,njk->nik", x, y)  # (N,3,3) = X^T Y
    u, s, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(np.einsum("nij,njk->nik", u, vt)))
    d = np.where(d == 0, 1.0, d)
    fix = np.ones_like(s)
    fix[:, -1] = d
    rotation = np.einsum("nij,nj,njk->nik", u, fix, vt)  # applied as x @ rotation
    scale = (s * fix).sum(axis=1) / np.maximum(var_x, 1e-12)
    return scale[:, None, None] * np.einsum("nji,nik->njk", x, rotation) + mu_gt


def mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame mean joint position error (N,) in mm; align both sides by pelvis first."""
    return np.linalg.norm(np.asarray(pred) - np.asarray(gt), axis=-1).mean(axis=-1) * M_TO_MM


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame error (N,) in mm after Procrustes alignment of pred onto gt."""
    return mpjpe(compute_similarity_transform(pred, gt), gt)


def accel_error_sequence(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Acceleration error (N-2,) in mm/frame² of one sequence's pelvis-aligned joints (N,J,3)."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    accel_pred = pred[:-2] - 2 * pred[1:-1] + pred[2:]
    accel_gt = gt[:-2] - 2 * gt[1:-1] + gt[2:]
    return np.linalg.norm(accel_pred - accel_gt, axis=-1).mean(axis=-1) * M_TO_MM


def accel_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Official layout (N,): zeros at frames 0 and N-1, which the caller then excludes."""
    out = np.zeros(len(pred), dtype=np.float64)
    if len(pred) > 2:
        out[1:-1] = accel_error_sequence(pred, gt)
    return out


def frame_weighted_mean(values: Sequence[np.ndarray]) -> float:
    """Mean over the concatenated per-frame values of all sequences (NaN when there are none)."""
    arrays = [np.asarray(v, dtype=np.float64).reshape(-1) for v in values]
    total = np.concatenate(arrays) if arrays else np.zeros(0)
    return float(total.mean()) if total.size else float("nan")
