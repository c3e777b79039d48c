"""Options that several `tcmr` commands share, spelled and checked the same way everywhere.

A shared concept has one option name and one help text (`--store`, `--device`), an output
path is checked the same way wherever it is given, and a value the user got wrong is
refused before any work starts, naming the option.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from storage.errors import TcmrError


def output_folder(value: Path | None) -> Path | None:
    """Callback of an output-folder option: a new or existing folder, never an existing file."""
    if value is not None and value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{value} is a file, not a folder; give a folder to write into")
    return value


def output_file(value: Path | None) -> Path | None:
    """Callback of an output-file option: a new or existing file, never an existing folder."""
    if value is not None and value.is_dir():
        raise typer.BadParameter(f"{value} is a folder; give the path of the file to write")
    return value


Store = Annotated[
    str | None,
    typer.Option(
        help="Store root: a folder or an fsspec URL (s3://...); default: the `store` "
        "setting (TCMR_STORE)."
    ),
]
Device = Annotated[
    str | None,
    typer.Option(
        help="auto, cpu, cuda, cuda:1 ...; default: the `device` setting (TCMR_DEVICE; auto "
        "is CUDA when torch sees a GPU, else cpu)."
    ),
]


def _setting(name: str) -> str:
    """A setting as an error names it: the variable and the file it may come from."""
    from storage.settings import config_file

    return f"the `{name}` setting (TCMR_{name.upper()} or `{name}` in {config_file()})"


def store_root(store: str | None, existing: bool = False) -> str:
    """The store root to use: the option, else the setting; a local root must not be a file.

    `existing`: the command only reads what is there (`store info`, `refresh`), so a local
    root that does not exist is a mistyped path, not an empty store.
    """
    from storage.backend import is_url
    from storage.settings import get_settings

    root = store or get_settings().store
    where = "--store" if store else _setting("store")
    if not is_url(root) and Path(root).exists() and not Path(root).is_dir():
        raise TcmrError(f"{where} {root}: is a file, not a store folder")
    if existing and not is_url(root) and not Path(root).exists():
        raise TcmrError(f"{where} {root}: no such store folder")
    return root


def torch_device(device: str | None) -> str:
    """The torch device to run on (the option, else the setting), refused if torch cannot use it.

    Checked before any work: a CUDA device on a machine without one would otherwise fail
    deep inside torch after parsing and staging, with an AssertionError.
    """
    import torch

    from storage.settings import get_settings

    name = get_settings(device=device).torch_device()
    where = "--device" if device else _setting("device")
    try:
        parsed = torch.device(name)
    except RuntimeError as error:
        raise TcmrError(
            f"{where} {name!r} is not a torch device (cpu, cuda, cuda:1 ...)"
        ) from error
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise TcmrError(
                f"{where} {name!r}: torch {torch.__version__} sees no CUDA device on this "
                "machine; use --device cpu"
            )
        if parsed.index is not None and parsed.index >= count:
            raise TcmrError(f"{where} {name!r}: this machine has {count} CUDA device(s)")
    return name
