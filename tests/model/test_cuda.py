"""The model core on a CUDA device gives the CPU numbers (skipped without one)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.backbone import load_spin_backbone
from model.regressor import Regressor, load_spin_regressor
from model.smpl import SMPL

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_backbone_regressor_smpl_on_cuda_match_cpu(base_data: Path, smpl: SMPL) -> None:
    spin = base_data / "spin_model_checkpoint.pth.tar"
    crops = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    regressor = Regressor(base_data / "smpl_mean_params.npz")
    load_spin_regressor(regressor, spin)
    regressor.eval()
    with torch.no_grad():
        cpu_features = load_spin_backbone(spin)(crops)
        cpu = regressor(cpu_features, smpl, j14=True)
        gpu_features = load_spin_backbone(spin, device="cuda")(crops.cuda())
        gpu_smpl = SMPL(
            base_data / "SMPL_NEUTRAL.pkl",
            base_data / "J_regressor_extra.npy",
            base_data / "J_regressor_h36m.npy",
        ).cuda()
        gpu = regressor.cuda()(cpu_features.cuda(), gpu_smpl, j14=True)
    # TF32 convolutions on recent GPUs: features agree to about 1e-3 relative.
    torch.testing.assert_close(gpu_features.cpu(), cpu_features, atol=2e-3, rtol=2e-2)
    # Rotations rather than axis-angle: the mean root is near pi, where the sign may flip.
    for key in ("rotmat", "verts", "kp_3d", "kp_2d"):
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], atol=1e-4, rtol=1e-4, msg=key)
    cam_and_betas = torch.cat([cpu["theta"][:, :3], cpu["theta"][:, 75:]], dim=1)
    gpu_cam_and_betas = torch.cat([gpu["theta"][:, :3], gpu["theta"][:, 75:]], dim=1).cpu()
    torch.testing.assert_close(gpu_cam_and_betas, cam_and_betas, atol=1e-4, rtol=1e-4)
