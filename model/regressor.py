"""SPIN's iterative error-feedback (IEF) head: a 2048-d feature -> SMPL pose, shape, camera.

Parameter and buffer names are those of the official checkpoints (`regressor.fc1`, ...,
`regressor.init_pose`), so TCMR and SPIN weights load without renaming. The SMPL model is
passed to `forward` rather than held, so no state_dict of this head carries licensed SMPL
data.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from model.backbone import check_state, read_spin_state
from model.geometry import rot6d_to_rotmat, rotmat_to_axis_angle, weak_perspective_projection
from model.smpl import SMPL
from storage.errors import FormatError, MissingFileError

NPOSE = 24 * 6
NSHAPE = 10
NCAM = 3
FEATURE_DIM = 2048
HIDDEN = 1024
MEAN_PARAM_SHAPES: dict[str, int] = {"pose": NPOSE, "shape": NSHAPE, "cam": NCAM}


def load_mean_params(source: Path | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`pose` (144,), `shape` (10,), `cam` (3,) from `smpl_mean_params.npz` or a dict."""
    where = "mean params"
    if not isinstance(source, Mapping):
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise MissingFileError(f"SMPL mean parameters {path} not found")
        try:
            with np.load(path, allow_pickle=False) as npz:
                source = {key: npz[key] for key in npz.files}
        except (OSError, ValueError) as error:
            raise FormatError(f"{path}: not a readable .npz ({error})") from error
    params: dict[str, np.ndarray] = {}
    for key, size in MEAN_PARAM_SHAPES.items():
        if key not in source:
            raise FormatError(f"{where}: field '{key}' is missing")
        value = np.asarray(source[key], dtype=np.float64).reshape(-1)
        if value.shape != (size,):
            raise FormatError(f"{where}: field '{key}' has {value.size} values, expected {size}")
        params[key] = value
    return params


class Regressor(nn.Module):
    """Three IEF iterations from the mean parameters; returns the last one."""

    def __init__(self, mean_params: Path | dict[str, np.ndarray], n_iter: int = 3) -> None:
        super().__init__()
        self.n_iter = n_iter
        self.fc1 = nn.Linear(FEATURE_DIM + NPOSE + NSHAPE + NCAM, HIDDEN)
        self.drop1 = nn.Dropout()
        self.fc2 = nn.Linear(HIDDEN, HIDDEN)
        self.drop2 = nn.Dropout()
        self.decpose = nn.Linear(HIDDEN, NPOSE)
        self.decshape = nn.Linear(HIDDEN, NSHAPE)
        self.deccam = nn.Linear(HIDDEN, NCAM)
        for decoder in (self.decpose, self.decshape, self.deccam):
            nn.init.xavier_uniform_(decoder.weight, gain=0.01)
        params = load_mean_params(mean_params)
        for key in MEAN_PARAM_SHAPES:
            self.register_buffer(
                f"init_{key}", torch.tensor(params[key], dtype=torch.float32)[None]
            )

    def forward(self, features: Tensor, smpl: SMPL, j14: bool = False) -> dict[str, Tensor]:
        """features (B, 2048) -> theta (B, 85) = [cam | 72 axis-angle | betas], verts,
        kp_3d (B, 49, 3) or the 14 evaluation joints, kp_2d in [-1, 1], rotmat (B, 24, 3, 3)."""
        batch = features.shape[0]
        pose = self.init_pose.expand(batch, -1)
        shape = self.init_shape.expand(batch, -1)
        cam = self.init_cam.expand(batch, -1)
        for _ in range(self.n_iter):
            x = torch.cat([features, pose, shape, cam], dim=1)
            x = self.drop2(self.fc2(self.drop1(self.fc1(x))))
            pose = self.decpose(x) + pose
            shape = self.decshape(x) + shape
            cam = self.deccam(x) + cam
        rotmat = rot6d_to_rotmat(pose)
        body = smpl(shape, rotmat)
        joints = smpl.joints14(body.vertices) if j14 else body.joints
        axis_angle = rotmat_to_axis_angle(rotmat).reshape(batch, -1)
        return {
            "theta": torch.cat([cam, axis_angle, shape], dim=1),
            "verts": body.vertices,
            "kp_2d": weak_perspective_projection(joints, cam),
            "kp_3d": joints,
            "rotmat": rotmat,
        }


def load_spin_regressor(regressor: Regressor, path: Path) -> list[str]:
    """Fill the head (fc1, fc2, dec*, init_*) from a SPIN checkpoint, strictly for those
    keys; returns the names of the other (backbone) entries, which are ignored."""
    state = read_spin_state(path)
    expected = regressor.state_dict()
    head = {key: value for key, value in state.items() if key in expected}
    ignored = sorted(key for key in state if key not in expected)
    check_state(head, expected, f"{path}: does not match the SPIN regressor head")
    regressor.load_state_dict(head, strict=True)
    return ignored
