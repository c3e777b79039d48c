"""Synthetic base-data files in the official formats (SMPL pkls, SPIN checkpoint, small arrays).

Written from the format descriptions (tcmr.md §2.5, §3.3, §3.4; ecosystem.md §5.2-5.3), not
from this project's loaders, so tests of the loaders can catch a misreading. The SMPL pkls
are written as Python 2 wrote them (protocol 2, byte strings, `numpy.core` names), like the
official files: `shapedirs` and friends are chumpy `Ch` objects and `J_regressor` is a
sparse matrix under its old `scipy.sparse.csc` path.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import torch

from pipeline.sample.body import symmetric_vertex_ids, synthetic_smpl_arrays
from pipeline.sample.py2pickle import dumps_py2
from storage.files import write_atomic, write_atomic_stream

SMPL_FILES: dict[str, str] = {
    "neutral": "SMPL_NEUTRAL.pkl",
    "male": "SMPL_MALE.pkl",
    "female": "SMPL_FEMALE.pkl",
}
# Keys of an official SMPL pkl that are pickled as chumpy objects when `chumpy=True`.
CHUMPY_KEYS: tuple[str, ...] = ("v_template", "shapedirs", "posedirs", "weights", "J")

# ResNet-50 as SPIN's HMR builds it: Bottleneck blocks [3, 4, 6, 3], expansion 4.
RESNET50_LAYERS: tuple[tuple[int, int], ...] = ((64, 3), (128, 4), (256, 6), (512, 3))
BOTTLENECK_EXPANSION = 4
# SPIN's IEF head: 2048 features + 144 pose + 10 shape + 3 camera in, 1024 hidden.
HEAD_SHAPES: dict[str, tuple[int, ...]] = {
    "fc1.weight": (1024, 2048 + 144 + 10 + 3),
    "fc1.bias": (1024,),
    "fc2.weight": (1024, 1024),
    "fc2.bias": (1024,),
    "decpose.weight": (144, 1024),
    "decpose.bias": (144,),
    "decshape.weight": (10, 1024),
    "decshape.bias": (10,),
    "deccam.weight": (3, 1024),
    "deccam.bias": (3,),
}


def _stand_in_class(module: str, name: str) -> type:
    """A class that pickles under `module.name` (the real class need not be installed)."""
    return type(name, (), {"__module__": module, "__qualname__": name})


@contextlib.contextmanager
def _registered(classes: dict[str, type]) -> Iterator[None]:
    """Make `module.Class` resolvable for pickle during a dump, then restore sys.modules."""
    saved: dict[str, types.ModuleType | None] = {}
    try:
        for qualified, cls in classes.items():
            module_name, _, attr = qualified.rpartition(".")
            parts = module_name.split(".")
            for depth in range(1, len(parts) + 1):
                name = ".".join(parts[:depth])
                if name not in saved:
                    saved[name] = sys.modules.get(name)
                    if depth == len(parts) or name not in sys.modules:
                        sys.modules[name] = types.ModuleType(name)
            setattr(sys.modules[module_name], attr, cls)
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def _as_chumpy(ch_class: type, array: np.ndarray) -> Any:
    """A chumpy `Ch` as it appears in the official pkls: the array in state `x`."""
    obj = ch_class.__new__(ch_class)
    obj.__dict__.update({"x": np.asarray(array), "_dirty_vars": set(), "_itr": None})
    return obj


def _as_old_sparse(csc_class: type, matrix: scipy.sparse.spmatrix) -> Any:
    """A csc matrix pickled under the pre-1.8 scipy path, with the state scipy restores."""
    csc = scipy.sparse.csc_matrix(matrix)
    obj = csc_class.__new__(csc_class)
    obj.__dict__.update(csc.__dict__)
    return obj


def write_smpl_pkl(path: Path, arrays: dict[str, Any], chumpy: bool = True) -> Path:
    """Write an SMPL model pkl with the official keys (protocol 2, latin1-readable).

    `arrays` is `synthetic_smpl_arrays(...)`'s dict (its extra-regressor keys are not part
    of an SMPL file and are left out). With `chumpy`, the `CHUMPY_KEYS` are pickled as
    `chumpy.ch.Ch` objects, as in the official files, so a reader needs chumpy stand-ins.
    """
    v_template = np.asarray(arrays["v_template"], dtype=np.float64)
    j_regressor = scipy.sparse.csc_matrix(arrays["J_regressor"])
    model: dict[str, Any] = {
        "v_template": v_template,
        "shapedirs": np.asarray(arrays["shapedirs"], dtype=np.float64),
        "posedirs": np.asarray(arrays["posedirs"], dtype=np.float64),
        "weights": np.asarray(arrays["weights"], dtype=np.float64),
        "weights_prior": np.asarray(arrays["weights"], dtype=np.float64),
        "kintree_table": np.asarray(arrays["kintree_table"], dtype=np.uint32),
        "f": np.asarray(arrays["f"], dtype=np.uint32),
        "J": np.asarray(j_regressor @ v_template),
        "vert_sym_idxs": symmetric_vertex_ids(v_template),
        "bs_type": "lrotmin",
        "bs_style": "lbs",
    }
    ch_class = _stand_in_class("chumpy.ch", "Ch")
    csc_class = _stand_in_class("scipy.sparse.csc", "csc_matrix")
    model["J_regressor"] = _as_old_sparse(csc_class, j_regressor)
    model["J_regressor_prior"] = _as_old_sparse(csc_class, j_regressor)
    if chumpy:
        for key in CHUMPY_KEYS:
            model[key] = _as_chumpy(ch_class, model[key])

    stand_ins = {"chumpy.ch.Ch": ch_class, "scipy.sparse.csc.csc_matrix": csc_class}
    with _registered(stand_ins):
        payload = dumps_py2(model)
    return write_atomic(path, lambda tmp: tmp.write_bytes(payload))


def mean_params(seed: int = 0) -> dict[str, np.ndarray]:
    """A valid SPIN mean: 24 rotations in the interleaved 6D layout (the 3x2 matrix [R[:,0]
    R[:,1]] read row by row), the root turned by pi about x as in the real file, the
    others small random rotations; small mean betas; camera scale 0.9."""
    rng = np.random.default_rng(seed)
    rotations = [np.diag([1.0, -1.0, -1.0])]
    for _ in range(23):
        axis_angle = rng.normal(scale=0.1, size=3)
        angle = np.linalg.norm(axis_angle)
        k = axis_angle / angle
        skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        rotations.append(np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew)
    pose = np.concatenate([r[:, :2].reshape(-1) for r in rotations])
    return {
        "pose": pose.astype(np.float64),
        "shape": rng.normal(scale=0.2, size=10).astype(np.float64),
        "cam": np.array([0.9, 0.0, 0.0], dtype=np.float64),
    }


def resnet50_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of a torchvision-named ResNet-50 state_dict (no `fc`), BN buffers incl."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}
    shapes.update(_bn_shapes("bn1", 64))
    inplanes = 64
    for layer, (planes, blocks) in enumerate(RESNET50_LAYERS, start=1):
        out = planes * BOTTLENECK_EXPANSION
        for block in range(blocks):
            prefix = f"layer{layer}.{block}"
            shapes[f"{prefix}.conv1.weight"] = (planes, inplanes, 1, 1)
            shapes.update(_bn_shapes(f"{prefix}.bn1", planes))
            shapes[f"{prefix}.conv2.weight"] = (planes, planes, 3, 3)
            shapes.update(_bn_shapes(f"{prefix}.bn2", planes))
            shapes[f"{prefix}.conv3.weight"] = (out, planes, 1, 1)
            shapes.update(_bn_shapes(f"{prefix}.bn3", out))
            if block == 0:
                shapes[f"{prefix}.downsample.0.weight"] = (out, inplanes, 1, 1)
                shapes.update(_bn_shapes(f"{prefix}.downsample.1", out))
            inplanes = out
    return shapes


def _bn_shapes(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    stats = ("weight", "bias", "running_mean", "running_var")
    shapes: dict[str, tuple[int, ...]] = {f"{prefix}.{name}": (channels,) for name in stats}
    shapes[f"{prefix}.num_batches_tracked"] = ()
    return shapes


def spin_state_dict(params: dict[str, np.ndarray], seed: int = 0) -> dict[str, torch.Tensor]:
    """SPIN HMR's state_dict with seeded weights: He-scaled convolutions, BatchNorm with
    positive running variances (the last BN of each block damped so activations stay
    bounded through 16 residual blocks), a Linear-default head, init_* from `params`."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {
        "init_pose": torch.from_numpy(params["pose"]).float()[None],
        "init_shape": torch.from_numpy(params["shape"]).float()[None],
        "init_cam": torch.from_numpy(params["cam"]).float()[None],
    }
    for key, shape in resnet50_shapes().items():
        name = key.rsplit(".", 1)[1]
        if name == "num_batches_tracked":
            state[key] = torch.tensor(100_000, dtype=torch.int64)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif name == "weight":
            damp = 0.2 if key.endswith(("bn3.weight", "downsample.1.weight")) else 1.0
            state[key] = damp * (1.0 + 0.1 * torch.randn(shape, generator=gen))
        elif name in ("bias", "running_mean"):
            state[key] = 0.05 * torch.randn(shape, generator=gen)
        else:  # running_var
            state[key] = 0.5 + torch.rand(shape, generator=gen)
    for key, shape in HEAD_SHAPES.items():
        bound = 1.0 / HEAD_SHAPES[key.rsplit(".", 1)[0] + ".weight"][1] ** 0.5
        if key.startswith("dec") and key.endswith("weight"):
            bound *= 0.01
        state[key] = (torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound
    return state


def write_spin_checkpoint(path: Path, params: dict[str, np.ndarray], seed: int = 0) -> Path:
    """Write `spin_model_checkpoint.pth.tar` with the keys SPIN's CheckpointSaver writes."""
    model = spin_state_dict(params, seed)
    gen = torch.Generator().manual_seed(seed)
    checkpoint = {
        "model": model,
        "optimizer": {
            "state": {},
            "param_groups": [
                {
                    "lr": 5e-5,
                    "betas": (0.9, 0.999),
                    "eps": 1e-8,
                    "weight_decay": 0,
                    "amsgrad": False,
                    "params": list(range(len(model) - 3)),
                }
            ],
        },
        "epoch": 3,
        "batch_idx": 1200,
        "batch_size": 64,
        "dataset_perm": torch.randperm(4096, generator=gen),
        "total_step_count": 180_000,
    }
    return write_atomic_stream(path, lambda handle: torch.save(checkpoint, handle))


def _save_npy(path: Path, array: np.ndarray) -> Path:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.save(handle, array)

    return write_atomic(path, write)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez(handle, **arrays)

    return write_atomic(path, write)


def write_base_data(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Write a complete synthetic base-data folder; returns file name -> path.

    Files: `SMPL_{NEUTRAL,MALE,FEMALE}.pkl` (chumpy pkls; three slightly different
    bodies), `smpl_mean_params.npz`, `J_regressor_extra.npy` (9,6890),
    `J_regressor_h36m.npy` (17,6890) (both from the neutral body) and
    `spin_model_checkpoint.pth.tar`.
    """
    folder = Path(folder)
    written: dict[str, Path] = {}
    for offset, (gender, name) in enumerate(SMPL_FILES.items()):
        arrays = synthetic_smpl_arrays(seed + offset, gender=gender)
        if gender == "neutral":
            neutral = arrays
        written[name] = write_smpl_pkl(folder / name, arrays)
    params = mean_params(seed)
    written["smpl_mean_params.npz"] = _save_npz(folder / "smpl_mean_params.npz", params)
    written["J_regressor_extra.npy"] = _save_npy(
        folder / "J_regressor_extra.npy", neutral["joint_regressor_extra"]
    )
    written["J_regressor_h36m.npy"] = _save_npy(
        folder / "J_regressor_h36m.npy", neutral["joint_regressor_h36m"]
    )
    written["spin_model_checkpoint.pth.tar"] = write_spin_checkpoint(
        folder / "spin_model_checkpoint.pth.tar", params, seed
    )
    return written
