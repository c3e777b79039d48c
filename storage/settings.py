"""One typed place for user settings: where licensed base data lives, the store, the device.

Values come from (highest first) explicit arguments, `TCMR_*` environment variables, a TOML
config file (`TCMR_CONFIG`, else `./tcmr.toml` when present), then the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from storage.errors import FormatError, MissingFileError

# Where each licensed base-data file comes from, for error messages.
BASE_DATA_ORIGINS: dict[str, str] = {
    "SMPL_NEUTRAL.pkl": "smplify.is.tue.mpg.de (licensed; convert with `tcmr smpl convert`)",
    "SMPL_MALE.pkl": "smpl.is.tue.mpg.de (licensed)",
    "SMPL_FEMALE.pkl": "smpl.is.tue.mpg.de (licensed)",
    "spin_model_checkpoint.pth.tar": "the SPIN / TCMR base_data release (licensed)",
    "smpl_mean_params.npz": "the SPIN / TCMR base_data release",
    "J_regressor_extra.npy": "the SPIN / TCMR base_data release",
    "J_regressor_h36m.npy": "the SPIN / TCMR base_data release",
}


def config_file() -> Path:
    return Path(os.environ.get("TCMR_CONFIG", "tcmr.toml"))


class Settings(BaseSettings):
    """Project settings; every field can be set as `TCMR_<FIELD>` or in the TOML file."""

    model_config = SettingsConfigDict(env_prefix="TCMR_", extra="ignore")

    base_data: Path = Path("data/base_data")
    """Folder with SMPL models, the SPIN checkpoint, mean params and joint regressors."""
    smpl_dir: Path | None = None
    """Folder with SMPL_{NEUTRAL,MALE,FEMALE}.pkl or .npz; defaults to `base_data`."""
    store: str = "data/stores"
    """Root of the Zarr stores: a local path or any fsspec URL."""
    device: str = "auto"
    """`auto` (CUDA when available), `cpu`, or a torch device string such as `cuda:0`."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return (init_settings, env_settings, toml)

    def base_data_file(self, name: str) -> Path:
        """Path of a base-data file, or an error naming it, its setting and its origin."""
        folder = self.smpl_dir if name.startswith("SMPL_") and self.smpl_dir else self.base_data
        setting = "TCMR_SMPL_DIR" if folder is self.smpl_dir else "TCMR_BASE_DATA"
        path = Path(folder) / name
        if name.startswith("SMPL_") and not path.exists() and path.with_suffix(".npz").exists():
            return path.with_suffix(".npz")
        if not path.exists():
            origin = BASE_DATA_ORIGINS.get(name, "the user")
            raise MissingFileError(
                f"{path} not found. It is read from the folder set by {setting} "
                f"(or `{setting.removeprefix('TCMR_').lower()}` in {config_file()}); "
                f"the file comes from {origin}."
            )
        return path

    def torch_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def _load(**overrides: Any) -> Settings:
    """Settings(**overrides), with a bad config file or value named instead of a pydantic dump.

    The TOML file is checked for unknown keys too: `extra="ignore"` must stay for the
    environment (other TCMR_* variables), but a misspelt key in the file would otherwise
    be dropped silently and its default used.
    """
    path = config_file()
    try:
        found = tomllib.loads(path.read_text()) if path.is_file() else {}
        settings = Settings(**overrides)
    except tomllib.TOMLDecodeError as error:
        raise FormatError(f"{path}: not valid TOML ({error})") from error
    except ValidationError as error:
        problems = "; ".join(
            f"`{e['loc'][0]}` ({path} or TCMR_{str(e['loc'][0]).upper()}): {e['msg']}, "
            f"got {e['input']!r}"
            for e in error.errors()
        )
        raise FormatError(f"invalid settings: {problems}") from error
    unknown = sorted(set(found) - set(Settings.model_fields))
    if unknown:
        raise FormatError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(Settings.model_fields)}"
        )
    return settings


@lru_cache(maxsize=1)
def _cached() -> Settings:
    return _load()


def get_settings(**overrides: Any) -> Settings:
    """The settings in force; overrides (e.g. from CLI options) win over every source."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return _load(**overrides) if overrides else _cached()
