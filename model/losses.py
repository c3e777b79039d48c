"""TCMR's training loss (tcmr.md §9.1): 2D and 3D keypoints, SMPL pose as rotation matrices, shape.

Every training output (K per window: past, future, integrated for TCMR) is one row; masks
select the rows whose dataset has 3D joints (`w_3d`) or SMPL parameters (`w_smpl`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.geometry import axis_angle_to_rotmat
from storage.layout import COMMON_JOINTS, COMMON_PELVIS


def _pelvis_aligned(joints: Tensor) -> Tensor:
    common = joints[:, COMMON_JOINTS]
    pelvis = common[:, list(COMMON_PELVIS)].mean(dim=1, keepdim=True)
    return common - pelvis


class TCMRLoss(nn.Module):
    """Weighted sum of the four official terms; weights default to the released configs'."""

    def __init__(
        self, kp_2d: float = 300.0, kp_3d: float = 300.0, pose: float = 60.0, shape: float = 0.06
    ) -> None:
        super().__init__()
        self.w_kp_2d = kp_2d
        self.w_kp_3d = kp_3d
        self.w_pose = pose
        self.w_shape = shape

    def forward(self, pred: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """pred: kp_2d (B,K,49,2), kp_3d (B,K,49,3), theta (B,K,85); batch: the store targets.

        Returns the weighted terms `kp_2d`, `kp_3d`, `pose`, `shape` and their sum `total`.
        """
        pred_2d = pred["kp_2d"].flatten(0, 1)
        gt_2d = batch["kp_2d"].flatten(0, 1).to(pred_2d)
        conf = gt_2d[..., 2:]
        loss_2d = (conf * (pred_2d - gt_2d[..., :2]) ** 2).mean()

        zero = pred_2d.new_zeros(())
        w_3d = batch["w_3d"].flatten(0, 1).bool()
        if bool(w_3d.any()):
            pred_3d = _pelvis_aligned(pred["kp_3d"].flatten(0, 1)[w_3d])
            gt_3d = _pelvis_aligned(batch["kp_3d"].flatten(0, 1)[w_3d][..., :3].to(pred_3d))
            loss_3d = ((pred_3d - gt_3d) ** 2).mean()
        else:
            loss_3d = zero

        terms = {"kp_2d": loss_2d * self.w_kp_2d, "kp_3d": loss_3d * self.w_kp_3d}
        w_smpl = batch["w_smpl"].flatten(0, 1).bool()
        if bool(w_smpl.any()):
            pred_theta = pred["theta"].flatten(0, 1)[w_smpl]
            gt_theta = batch["theta"].flatten(0, 1)[w_smpl].to(pred_theta)
            pred_rot = axis_angle_to_rotmat(pred_theta[:, 3:75].reshape(-1, 24, 3))
            gt_rot = axis_angle_to_rotmat(gt_theta[:, 3:75].reshape(-1, 24, 3))
            terms["pose"] = ((pred_rot - gt_rot) ** 2).mean() * self.w_pose
            terms["shape"] = ((pred_theta[:, 75:] - gt_theta[:, 75:]) ** 2).mean() * self.w_shape
        else:
            terms["pose"] = zero
            terms["shape"] = zero
        terms["total"] = torch.stack(list(terms.values())).sum()
        return terms
