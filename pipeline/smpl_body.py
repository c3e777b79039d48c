"""SMPL forward kinematics for the pipeline: vertices, 24 skeleton joints and SPIN's 49 joints.

The pipeline may not import `model.*` (dependency rule), yet parsing 3DPW and rendering the
sample figure both need the SMPL body. This module builds `smplx.SMPL` from SMPL arrays and
derives the 49 joints exactly as SPIN/VIBE do (tcmr.md §2.6): 24 skeleton joints, 11 vertex
joints (nose, eyes, ears, toes, heels), 9 `J_regressor_extra` rows, picked by `JOINT_MAP`.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import smplx
import torch

from storage.errors import FormatError, MissingFileError

# Vertex joints of smplx's SMPL-H selector in smplx's order (rows 24..34 of its output):
# nose, reye, leye, rear, lear, LBigToe, LSmallToe, LHeel, RBigToe, RSmallToe, RHeel.
VERTEX_JOINT_IDS: tuple[int, ...] = (332, 6260, 2800, 4071, 583, 3216, 3226, 3387, 6617, 6624, 6787)
# Row of the 54-joint tensor [24 skeleton | 21 vertex joints | 9 extra] for each of the 49.
# The vertex-joint rows used (24..34) are exactly VERTEX_JOINT_IDS; fingertips are unused.
SPIN_JOINT_MAP: tuple[int, ...] = (
    24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33,
    34, 8, 5, 45, 46, 4, 7, 21, 19, 17, 16, 18, 20, 47, 48, 49, 50, 51, 52, 53, 24, 26, 25,
    28, 27,
)  # fmt: skip
SMPL_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


class _ChumpyStub:
    """Stands in for chumpy objects of official SMPL pickles; the array is `state['x']`."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.__dict__["x"], dtype=dtype)


class _SmplUnpickler(pickle.Unpickler):
    """Reads Python-2 SMPL pickles without chumpy installed."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("chumpy"):
            return _ChumpyStub
        if module.startswith("scipy.sparse"):
            return getattr(scipy.sparse, name)
        return super().find_class(module, name)


def load_smpl_arrays(path: Path) -> dict[str, Any]:
    """The SMPL model arrays from an official-layout `.pkl` (chumpy or not) or `.npz`."""
    if not Path(path).exists():
        raise MissingFileError(f"SMPL model {path} not found")
    try:
        if Path(path).suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                raw: Mapping[str, Any] = dict(data)
        else:
            with open(path, "rb") as handle:
                raw = _SmplUnpickler(handle, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as error:
        raise FormatError(f"SMPL model {path} cannot be read: {error}") from error
    missing = [key for key in SMPL_KEYS if key not in raw]
    if missing:
        raise FormatError(f"SMPL model {path} lacks field(s) {', '.join(missing)}")
    arrays = {key: raw[key] for key in SMPL_KEYS}
    for key in ("v_template", "shapedirs", "posedirs", "weights", "kintree_table", "f"):
        arrays[key] = np.asarray(arrays[key])
    regressor = arrays["J_regressor"]
    arrays["J_regressor"] = (
        regressor.toarray() if scipy.sparse.issparse(regressor) else np.asarray(regressor)
    )
    return arrays


@dataclass
class BodyOutput:
    """One batch of posed bodies (numpy, float32, metres)."""

    vertices: np.ndarray
    """[T, V, 3]"""
    joints24: np.ndarray
    """[T, 24, 3] SMPL skeleton joints."""
    joints49: np.ndarray
    """[T, 49, 3] SPIN-layout joints."""


class _SMPL10(smplx.SMPL):
    """smplx's SMPL with 10 betas: its class attribute SHAPE_SPACE_DIM (default 300) only
    decides the "only 10 shape coefficients" print and the num_betas cap."""

    SHAPE_SPACE_DIM = 10


class SpinBody:
    """A SMPL body that also returns SPIN's 49 joints (and optionally H36M's 17)."""

    def __init__(
        self,
        smpl_arrays: Mapping[str, Any],
        j_regressor_extra: np.ndarray,
        j_regressor_h36m: np.ndarray | None = None,
    ) -> None:
        arrays = dict(smpl_arrays)
        regressor = arrays["J_regressor"]
        arrays["J_regressor"] = (
            regressor.toarray() if scipy.sparse.issparse(regressor) else np.asarray(regressor)
        )
        self.faces = np.asarray(arrays["f"], dtype=np.int64)
        self.smpl = _SMPL10(
            model_path="", data_struct=smplx.utils.Struct(**arrays), create_transl=False
        )
        self.extra = torch.as_tensor(np.asarray(j_regressor_extra), dtype=torch.float32)
        self.h36m = (
            None
            if j_regressor_h36m is None
            else torch.as_tensor(np.asarray(j_regressor_h36m), dtype=torch.float32)
        )

    @torch.no_grad()
    def forward(self, pose: np.ndarray, betas: np.ndarray, transl: np.ndarray) -> BodyOutput:
        """Pose T bodies: pose [T, 72] axis-angle, betas [T, 10], transl [T, 3]."""
        pose_t = torch.as_tensor(np.asarray(pose), dtype=torch.float32)
        output = self.smpl(
            betas=torch.as_tensor(np.asarray(betas), dtype=torch.float32),
            global_orient=pose_t[:, :3],
            body_pose=pose_t[:, 3:],
            transl=torch.as_tensor(np.asarray(transl), dtype=torch.float32),
        )
        vertices = output.vertices
        skeleton = output.joints[:, :24]
        vertex_joints = vertices[:, list(VERTEX_JOINT_IDS)]
        extra = torch.einsum("jv,tvc->tjc", self.extra, vertices)
        # Pad the unused fingertip rows (35..44) so SPIN_JOINT_MAP indexes the 54-row layout.
        tips = torch.zeros(vertices.shape[0], 10, 3)
        all54 = torch.cat([skeleton, vertex_joints, tips, extra], dim=1)
        joints49 = all54[:, list(SPIN_JOINT_MAP)]
        return BodyOutput(
            vertices=vertices.numpy(), joints24=skeleton.numpy(), joints49=joints49.numpy()
        )

    @torch.no_grad()
    def h36m_joints(self, vertices: np.ndarray) -> np.ndarray:
        """[T, 17, 3] joints of `J_regressor_h36m` (VIBE h36m order) from vertices."""
        if self.h36m is None:
            raise ValueError("this SpinBody was built without J_regressor_h36m")
        verts = torch.as_tensor(vertices, dtype=torch.float32)
        return torch.einsum("jv,tvc->tjc", self.h36m, verts).numpy()
