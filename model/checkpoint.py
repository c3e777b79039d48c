"""Model checkpoints: import of the official TCMR files, and our own resumable format.

Every file is read with `torch.load(weights_only=True)`, so a checkpoint cannot run code.
Official files pickle one numpy float (`performance`); numpy scalars are plain data, so
exactly those globals are allow-listed and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from model.backbone import check_state, framing_problem
from model.config import ModelConfig
from model.smpl import SMPL
from model.tcmr import TCMR
from storage.errors import FormatError, MissingFileError
from storage.files import write_atomic_stream

FORMAT = "tcmr-pipeline/checkpoint"
FORMAT_VERSION = 1
OFFICIAL_SMPL_PREFIX = "regressor.smpl."

_NUMPY_SCALAR_GLOBALS: list[Any] = [
    np._core.multiarray.scalar,
    (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
    np.dtype,
    *(cls for cls in vars(np.dtypes).values() if isinstance(cls, type)),
]

# Placeholder mean parameters for models whose buffers are about to be loaded.
_ZERO_MEAN_PARAMS = {"pose": np.zeros(144), "shape": np.zeros(10), "cam": np.zeros(3)}


def _torch_load(path: Path) -> Any:
    """Load a checkpoint file safely, naming the file in every failure."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint {path} not found")
    try:
        with torch.serialization.safe_globals(_NUMPY_SCALAR_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or EOFError here
        framing = framing_problem(path)
        if framing:
            raise FormatError(
                f"checkpoint {path} is not a PyTorch checkpoint: {framing}"
            ) from error
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        detail = (
            f"it pickles {refused.group(1)}, which is never loaded (it could run code)"
            if refused
            else str(error).strip().splitlines()[0]
        )
        raise FormatError(
            f"checkpoint {path} cannot be read as plain tensors and data: {detail}"
        ) from error


def _template(config: ModelConfig) -> dict[str, Tensor]:
    """A fresh model's state_dict, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return TCMR(config, _ZERO_MEAN_PARAMS).state_dict()


def _official_weights(checkpoint: Any, path: Path, config: ModelConfig) -> dict[str, Tensor]:
    if not isinstance(checkpoint, dict) or "gen_state_dict" not in checkpoint:
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise FormatError(
            f"checkpoint {path}: field 'gen_state_dict' missing (found {keys}); "
            "is this an official TCMR checkpoint?"
        )
    if not isinstance(checkpoint["gen_state_dict"], dict):
        raise FormatError(f"checkpoint {path}: field 'gen_state_dict' is not a dict of tensors")
    state = {
        key: value
        for key, value in checkpoint["gen_state_dict"].items()
        if not key.startswith(OFFICIAL_SMPL_PREFIX)
    }
    check_state(
        state,
        _template(config),
        f"checkpoint {path}: field 'gen_state_dict' does not match the model",
    )
    return {key: value.float() for key, value in state.items()}


def import_official_tcmr(path: Path, config: ModelConfig | None = None) -> dict[str, Tensor]:
    """The encoder + regressor weights of an official `tcmr_*.pth.tar`, checked key by key.

    The embedded `regressor.smpl.*` entries are dropped: our SMPL layer is loaded separately.
    """
    return _official_weights(_torch_load(path), Path(path), config or ModelConfig())


def _fresh_model(config: ModelConfig, state: dict[str, Tensor], smpl: SMPL) -> TCMR:
    # Built on the meta device and then given the loaded tensors: no wasted random init.
    with torch.device("meta"):
        model = TCMR(config, _ZERO_MEAN_PARAMS)
    model.load_state_dict(state, strict=True, assign=True)
    return model.set_smpl(smpl).eval()


def load_official_tcmr(path: Path, config: ModelConfig | None, smpl: SMPL) -> TCMR:
    """An evaluation-ready TCMR from an official checkpoint and the user's SMPL layer."""
    config = config or ModelConfig()
    return _fresh_model(config, import_official_tcmr(path, config), smpl)


@dataclass
class Checkpoint:
    """Our checkpoint: weights, the config that built them, where they came from, resume state."""

    state_dict: dict[str, Tensor]
    config: ModelConfig
    provenance: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: Path,
    model: TCMR,
    config: ModelConfig,
    provenance: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write atomically (temp file, then os.replace) so a killed save leaves the old file."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "provenance": dict(provenance),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    return write_atomic_stream(path, lambda handle: torch.save(payload, handle))


def _our_checkpoint(payload: Any, path: Path) -> Checkpoint:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise FormatError(
            f"checkpoint {path}: field 'format' is not {FORMAT!r} "
            "(nor is there an official 'gen_state_dict')"
        )
    if payload.get("format_version") != FORMAT_VERSION:
        raise FormatError(
            f"checkpoint {path}: field 'format_version' is {payload.get('format_version')!r}, "
            f"this code reads {FORMAT_VERSION}"
        )
    try:
        config = ModelConfig.from_dict(payload["config"])
    except FormatError as error:
        raise FormatError(f"checkpoint {path}: field 'config': {error}") from error
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise FormatError(f"checkpoint {path}: field 'state_dict' is not a dict of tensors")
    check_state(
        state, _template(config), f"checkpoint {path}: field 'state_dict' does not match the model"
    )
    return Checkpoint(state, config, payload["provenance"], payload.get("extra", {}))


def load_checkpoint(path: Path) -> Checkpoint:
    """Read one of our checkpoints, validating its format, config and weights."""
    return _our_checkpoint(_torch_load(path), Path(path))


def load_model(path: Path, smpl: SMPL) -> TCMR:
    """An evaluation-ready TCMR from either an official checkpoint or one of ours."""
    payload = _torch_load(path)
    if isinstance(payload, dict) and "gen_state_dict" in payload:
        config = ModelConfig()
        return _fresh_model(config, _official_weights(payload, Path(path), config), smpl)
    checkpoint = _our_checkpoint(payload, Path(path))
    return _fresh_model(checkpoint.config, checkpoint.state_dict, smpl)
