"""Settings come from one typed place: arguments > environment > TOML file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.errors import MissingFileError
from storage.settings import Settings, get_settings


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TCMR_BASE_DATA", "TCMR_SMPL_DIR", "TCMR_STORE", "TCMR_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TCMR_CONFIG", str(tmp_path / "tcmr.toml"))


def test_defaults_are_relative_paths() -> None:
    settings = Settings()
    assert settings.base_data == Path("data/base_data")
    assert settings.store == "data/stores"
    assert settings.device == "auto"


def test_environment_beats_file_and_arguments_beat_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tcmr.toml").write_text('store = "s3://bucket/stores"\ndevice = "cuda:1"\n')
    assert Settings().store == "s3://bucket/stores"
    monkeypatch.setenv("TCMR_DEVICE", "cpu")
    settings = Settings()
    assert (settings.store, settings.device) == ("s3://bucket/stores", "cpu")
    assert get_settings(device="cuda:0", store=None).device == "cuda:0"


def test_missing_base_data_file_names_file_setting_and_origin(tmp_path: Path) -> None:
    settings = Settings(base_data=tmp_path)
    with pytest.raises(MissingFileError) as caught:
        settings.base_data_file("J_regressor_h36m.npy")
    message = str(caught.value)
    assert str(tmp_path / "J_regressor_h36m.npy") in message
    assert "TCMR_BASE_DATA" in message
    assert "base_data release" in message


def test_smpl_files_come_from_smpl_dir_and_accept_converted_npz(tmp_path: Path) -> None:
    smpl_dir = tmp_path / "smpl"
    smpl_dir.mkdir()
    settings = Settings(base_data=tmp_path / "base", smpl_dir=smpl_dir)
    with pytest.raises(MissingFileError, match="TCMR_SMPL_DIR"):
        settings.base_data_file("SMPL_NEUTRAL.pkl")
    (smpl_dir / "SMPL_NEUTRAL.npz").write_bytes(b"")
    assert settings.base_data_file("SMPL_NEUTRAL.pkl") == smpl_dir / "SMPL_NEUTRAL.npz"


def test_cpu_device_when_asked() -> None:
    assert Settings(device="cpu").torch_device() == "cpu"
