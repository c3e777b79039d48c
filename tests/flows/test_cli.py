"""The `tcmr` command: help lists subcommands, user errors are one clear line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flows.cli import DEBUG_VARIABLE, main
from model.backbone import read_spin_state
from model.checkpoint import import_official_tcmr
from storage.errors import FormatError

TCMR = [sys.executable, "-c", "from flows.cli import main; main()"]


def run_tcmr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TCMR, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of `tcmr ARGV` in this process, the error box's frame removed."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    return int(exited.value.code or 0), " ".join(re.sub(r"[│╭╮╰╯─]", " ", err).split())


def test_help_lists_every_subcommand_with_one_line() -> None:
    result = run_tcmr("--help")
    assert result.returncode == 0
    assert "settings" in result.stdout
    assert "Print the settings in force" in result.stdout


def test_settings_reports_missing_base_data(tmp_path: Path) -> None:
    result = run_tcmr("settings", env={"TCMR_BASE_DATA": str(tmp_path)})
    assert result.returncode == 0
    assert f"base_data: {tmp_path}" in result.stdout
    assert "missing J_regressor_h36m.npy" in result.stdout


def test_not_a_checkpoint_says_what_the_file_is(tmp_path: Path) -> None:
    text, cut = tmp_path / "notes.pt", tmp_path / "cut.pt"
    text.write_text("hello\n")
    torch.save({"model": torch.zeros(64)}, tmp_path / "whole.pt")
    cut.write_bytes((tmp_path / "whole.pt").read_bytes()[:300])
    with pytest.raises(FormatError) as caught:
        import_official_tcmr(text)
    assert str(caught.value) == (
        f"checkpoint {text} is not a PyTorch checkpoint: neither a zip archive nor a pickle "
        "(it starts with b'hell')"
    )
    with pytest.raises(FormatError, match="a truncated zip archive"):
        import_official_tcmr(cut)
    with pytest.raises(FormatError, match=f"{cut}: not a readable torch checkpoint .a truncated"):
        read_spin_state(cut)


def test_os_error_is_one_line_unless_debugging(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "afile").write_text("mine\n")
    inside_a_file = str(tmp_path / "afile" / "sample")
    code, err = run_main(["sample-data", inside_a_file], capsys)
    assert code == 2
    assert err == f"error: {inside_a_file}: Not a directory"
    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    with pytest.raises(NotADirectoryError):
        main(["sample-data", inside_a_file])


def test_settings_file_mistakes_name_the_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "tcmr.toml"
    env = {"TCMR_CONFIG": str(config)}
    cases = {
        'stroe = "/x"\n': f"error: {config}: unknown setting(s) stroe; known: base_data",
        "device = 3\n": f"error: invalid settings: `device` ({config} or TCMR_DEVICE): Input "
        "should be a valid string, got 3",
        "store = \n": f"error: {config}: not valid TOML (Invalid value (at line 1, column 9))",
    }
    for text, expected in cases.items():
        config.write_text(text)
        result = run_tcmr("settings", env=env)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith(expected), result.stderr
