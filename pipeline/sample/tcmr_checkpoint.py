"""A synthetic official TCMR checkpoint (`Trainer.save_model` layout, tcmr.md §3.1-3.2).

Every key and shape is written out here from the specification, not taken from our model,
so a test that loads this file checks our loader against the official layout rather than
against itself. Values are seeded random numbers of the scale a trained model has.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from storage.files import write_atomic_stream

FEATURES = 2048
HIDDEN = 1024
N_VERTS = 6890
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
# smplx's 21 extra vertex joints (nose, eyes, ears, toes, heels, fingertips).
EXTRA_JOINT_VERTICES = (
    332, 6260, 2800, 4071, 583, 3216, 3226, 3387, 6617, 6624, 6787,
    2746, 2319, 2445, 2556, 2673, 6191, 5782, 5905, 6016, 6133,
)  # fmt: skip


def _gru_shapes(prefix: str, input_size: int, bidirectional: bool) -> dict[str, tuple[int, ...]]:
    """nn.GRU parameter names for 2 layers of hidden 1024 (3 gates stacked: 3072 rows)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in (0, 1):
        layer_input = input_size if layer == 0 else HIDDEN * (2 if bidirectional else 1)
        for suffix in ("", "_reverse") if bidirectional else ("",):
            shapes[f"{prefix}.weight_ih_l{layer}{suffix}"] = (3 * HIDDEN, layer_input)
            shapes[f"{prefix}.weight_hh_l{layer}{suffix}"] = (3 * HIDDEN, HIDDEN)
            shapes[f"{prefix}.bias_ih_l{layer}{suffix}"] = (3 * HIDDEN,)
            shapes[f"{prefix}.bias_hh_l{layer}{suffix}"] = (3 * HIDDEN,)
    return shapes


def official_learned_shapes() -> dict[str, tuple[int, ...]]:
    """The 56 learned tensors of `gen_state_dict` (encoder + regressor, no buffers, no SMPL)."""
    shapes = {
        **_gru_shapes("encoder.gru_cur", FEATURES, bidirectional=True),
        **_gru_shapes("encoder.gru_bef", FEATURES, bidirectional=False),
        **_gru_shapes("encoder.gru_aft", FEATURES, bidirectional=False),
        "encoder.linear_cur.weight": (FEATURES, 2 * HIDDEN),
        "encoder.linear_cur.bias": (FEATURES,),
        "encoder.linear_bef.weight": (FEATURES, HIDDEN),
        "encoder.linear_bef.bias": (FEATURES,),
        "encoder.linear_aft.weight": (FEATURES, HIDDEN),
        "encoder.linear_aft.bias": (FEATURES,),
        "encoder.attention.fc.weight": (256, FEATURES),
        "encoder.attention.fc.bias": (256,),
        "encoder.attention.attention.0.weight": (256, 768),
        "encoder.attention.attention.0.bias": (256,),
        "encoder.attention.attention.2.weight": (256, 256),
        "encoder.attention.attention.2.bias": (256,),
        "encoder.attention.attention.4.weight": (3, 256),
        "encoder.attention.attention.4.bias": (3,),
        "regressor.fc1.weight": (1024, FEATURES + 144 + 13),
        "regressor.fc1.bias": (1024,),
        "regressor.fc2.weight": (1024, 1024),
        "regressor.fc2.bias": (1024,),
        "regressor.decpose.weight": (144, 1024),
        "regressor.decpose.bias": (144,),
        "regressor.decshape.weight": (10, 1024),
        "regressor.decshape.bias": (10,),
        "regressor.deccam.weight": (3, 1024),
        "regressor.deccam.bias": (3,),
    }
    return shapes


def _uniform(generator: torch.Generator, shape: tuple[int, ...], bound: float) -> torch.Tensor:
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def _learned(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """PyTorch-default-like scales; decoders small (xavier gain 0.01) as in a SPIN-initialised head."""
    out: dict[str, torch.Tensor] = {}
    for key, shape in official_learned_shapes().items():
        if ".gru_" in key:
            bound = HIDDEN**-0.5
        elif key.startswith("regressor.dec"):
            bound = 0.01 * (6 / (1024 + shape[0])) ** 0.5
        else:
            weight_shape = official_learned_shapes()[key.rsplit(".", 1)[0] + ".weight"]
            bound = weight_shape[1] ** -0.5
        out[key] = _uniform(generator, shape, bound)
    return out


def _init_buffers(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """SPIN-like mean parameters: near-identity rotations in the interleaved 6D layout."""
    identity_6d = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]).repeat(24)
    return {
        "regressor.init_pose": (identity_6d + 0.05 * torch.randn(144, generator=generator))[None],
        "regressor.init_shape": (0.1 * torch.randn(10, generator=generator))[None],
        "regressor.init_cam": torch.tensor([[0.9, 0.0, 0.0]]),
    }


def _smpl_entries(generator: torch.Generator, smpl_arrays: dict | None) -> dict[str, torch.Tensor]:
    """The `regressor.smpl.*` entries of a VIBE-style SMPL(batch_size=64) subclass."""
    j_regressor = torch.rand(24, N_VERTS, generator=generator)
    extra = torch.rand(9, N_VERTS, generator=generator)
    weights = torch.rand(N_VERTS, 24, generator=generator)
    entries = {
        "betas": torch.zeros(64, 10),
        "global_orient": torch.zeros(64, 3),
        "body_pose": torch.zeros(64, 69),
        "faces_tensor": torch.randint(0, N_VERTS, (13776, 3), generator=generator),
        "v_template": 0.3 * torch.randn(N_VERTS, 3, generator=generator),
        "shapedirs": 0.01 * torch.randn(N_VERTS, 3, 10, generator=generator),
        "J_regressor": j_regressor / j_regressor.sum(dim=1, keepdim=True),
        "posedirs": 0.001 * torch.randn(207, N_VERTS * 3, generator=generator),
        "parents": torch.tensor(SMPL_PARENTS, dtype=torch.int64),
        "lbs_weights": weights / weights.sum(dim=1, keepdim=True),
        "J_regressor_extra": extra / extra.sum(dim=1, keepdim=True),
        "vertex_joint_selector.extra_joints_idxs": torch.tensor(
            EXTRA_JOINT_VERTICES, dtype=torch.int64
        ),
    }
    for name, value in (smpl_arrays or {}).items():
        if name not in entries:
            raise KeyError(f"smpl_arrays: unknown SMPL entry {name!r}; known: {sorted(entries)}")
        entries[name] = torch.as_tensor(np.asarray(value)).to(entries[name].dtype)
    return {f"regressor.smpl.{name}": value for name, value in entries.items()}


def _motion_discriminator(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The unused MotionDiscriminator: GRU(69 -> 1024, 2 layers), attention pooling, fc."""
    state: dict[str, torch.Tensor] = {}
    for layer in (0, 1):
        state[f"gru.weight_ih_l{layer}"] = _uniform(
            generator, (3 * HIDDEN, 69 if layer == 0 else HIDDEN), HIDDEN**-0.5
        )
        state[f"gru.weight_hh_l{layer}"] = _uniform(generator, (3 * HIDDEN, HIDDEN), HIDDEN**-0.5)
        state[f"gru.bias_ih_l{layer}"] = _uniform(generator, (3 * HIDDEN,), HIDDEN**-0.5)
        state[f"gru.bias_hh_l{layer}"] = _uniform(generator, (3 * HIDDEN,), HIDDEN**-0.5)
    for index, rows in ((0, HIDDEN), (3, HIDDEN), (6, 1)):
        state[f"attention.attention.{index}.weight"] = _uniform(
            generator, (rows, HIDDEN), HIDDEN**-0.5
        )
        state[f"attention.attention.{index}.bias"] = _uniform(generator, (rows,), HIDDEN**-0.5)
    state["fc.weight"] = _uniform(generator, (1, HIDDEN), HIDDEN**-0.5)
    state["fc.bias"] = _uniform(generator, (1,), HIDDEN**-0.5)
    return state


def _adam_state(params: dict[str, torch.Tensor], lr: float, weight_decay: float) -> dict:
    """An Adam `state_dict` with moments for the last few (small) parameters only.

    Real files carry moments for every parameter; a few keep the synthetic file small while
    exercising the same pickled structure (ints, floats, tuples, tensors).
    """
    names = list(params)
    state = {
        index: {
            "step": torch.tensor(1500.0),
            "exp_avg": torch.zeros_like(params[name]),
            "exp_avg_sq": torch.zeros_like(params[name]),
        }
        for index, name in enumerate(names)
        if index >= len(names) - 4
    }
    group = {
        "lr": lr,
        "betas": (0.9, 0.999),
        "eps": 1e-08,
        "weight_decay": weight_decay,
        "amsgrad": False,
        "params": list(range(len(names))),
    }
    return {"state": state, "param_groups": [group]}


def write_official_tcmr_checkpoint(
    path: Path, seed: int = 0, smpl_arrays: dict | None = None
) -> Path:
    """Write a checkpoint laid out like a released `tcmr_*.pth.tar`; returns its path.

    `smpl_arrays` overrides `regressor.smpl.*` entries by short name (e.g. `v_template`), so
    the embedded SMPL can match synthetic SMPL files used elsewhere.
    """
    path = Path(path)
    generator = torch.Generator().manual_seed(seed)
    learned = _learned(generator)
    gen_state = {**learned, **_init_buffers(generator), **_smpl_entries(generator, smpl_arrays)}
    disc = _motion_discriminator(generator)
    checkpoint = {
        "epoch": 29,
        "gen_state_dict": gen_state,
        # evaluate() returns a numpy float64 (validation PA-MPJPE in mm).
        "performance": np.float64(52.7),
        "gen_optimizer": _adam_state(learned, lr=5e-5, weight_decay=0.0),
        "disc_motion_state_dict": disc,
        "disc_motion_optimizer": _adam_state(disc, lr=1e-4, weight_decay=1e-4),
    }
    return write_atomic_stream(path, lambda handle: torch.save(checkpoint, handle))
