"""The model's hyper-parameters and the paper's ablation switches (Tables 1-3), in one value.

A frozen dataclass serialises into checkpoints (`to_dict`) and back (`from_dict`) with
validation, so a checkpoint always rebuilds the architecture that produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from storage.errors import FormatError
from storage.layout import FEATURE_DIM, SEQLEN

ForecastTarget = Literal["none", "adjacent", "current"]


@dataclass(frozen=True)
class ModelConfig:
    """Released TCMR by default: 2-layer GRUs of 1024, 16-frame windows, 3 IEF iterations."""

    seqlen: int = SEQLEN
    feature_dim: int = FEATURE_DIM
    hidden_size: int = 1024
    n_layers: int = 2
    attention_size: int = 256
    n_iter: int = 3
    residual: bool = False
    """VIBE-style: add the static mid-frame feature to the bi-GRU (current) feature."""
    pose_forecast: bool = True
    """Past and future GRUs whose features are integrated with the current one by attention."""
    forecast_with_current: bool = False
    """Past GRU sees frames 0..mid and future GRU frames T-1..mid (Table 2 variant)."""
    forecast_target: ForecastTarget = "current"
    """Ground truth supervising the past/future outputs; "none" leaves them unsupervised."""
    all_frames: bool = False
    """VIBE-style baseline: regress every frame of the window from the bi-GRU."""

    def __post_init__(self) -> None:
        for name in (
            "seqlen",
            "feature_dim",
            "hidden_size",
            "n_layers",
            "attention_size",
            "n_iter",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise FormatError(
                    f"model config field {name!r}: expected a positive int, got {value!r}"
                )
        if self.seqlen < 3:
            raise FormatError(
                f"model config field 'seqlen': needs at least 3 frames, got {self.seqlen}"
            )
        for name in ("residual", "pose_forecast", "forecast_with_current", "all_frames"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise FormatError(
                    f"model config field {name!r}: expected true/false, got {value!r}"
                )
        if self.forecast_target not in get_args(ForecastTarget):
            raise FormatError(
                f"model config field 'forecast_target': expected one of "
                f"{get_args(ForecastTarget)}, got {self.forecast_target!r}"
            )
        if not self.pose_forecast:
            if self.forecast_with_current:
                raise FormatError(
                    "model config field 'forecast_with_current': needs pose_forecast=true"
                )
            if self.forecast_target == "adjacent":
                raise FormatError(
                    "model config field 'forecast_target': 'adjacent' needs pose_forecast=true"
                )
        if self.all_frames and self.pose_forecast:
            raise FormatError(
                "model config field 'all_frames': the all-frames baseline has no PoseForecast; "
                "set pose_forecast=false"
            )

    @property
    def mid_frame(self) -> int:
        return self.seqlen // 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild a config, naming any unknown key instead of silently dropping it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FormatError(
                f"model config: unknown key(s) {unknown}; known keys are {sorted(known)}"
            )
        return cls(**data)


def target_frames(config: ModelConfig) -> tuple[int, ...]:
    """Window frame index supervising each training output, in the model's output order."""
    mid = config.mid_frame
    if config.all_frames:
        return tuple(range(config.seqlen))
    if not config.pose_forecast or config.forecast_target == "none":
        return (mid,)
    if config.forecast_target == "adjacent":
        return (mid - 1, mid + 1, mid)
    return (mid, mid, mid)
