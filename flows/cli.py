"""The `tcmr` command: every step by hand, calling the same library functions as the flows.

Each area registers its subcommands from a module in `flows/commands/`; heavy imports
(torch, zarr, prefect) happen inside the commands so `tcmr --help` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

from storage.errors import TcmrError

# Modules in flows/commands/ that each define `register(app: typer.Typer) -> None`.
COMMAND_MODULES: tuple[str, ...] = (
    "sample",
    "smpl",
    "store",
    "download",
    "infer",
    "train",
    "build",
    "demo",
)

app = typer.Typer(
    name="tcmr",
    help="TCMR pipeline: datasets -> Zarr feature stores -> training, evaluation, inference. "
    "A mistake in the input is one line naming the file and the field (TCMR_DEBUG=1 shows "
    "the traceback).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root() -> None:
    """The top-level options (only --help); each subcommand has its own."""


@app.command("settings")
def show_settings() -> None:
    """Print the settings in force and which base-data files are present."""
    from storage.settings import BASE_DATA_ORIGINS, config_file, get_settings

    settings = get_settings()
    typer.echo(f"config file: {config_file()} ({'found' if config_file().exists() else 'absent'})")
    for name, value in settings.model_dump().items():
        typer.echo(f"{name}: {value}")
    for name in BASE_DATA_ORIGINS:
        try:
            typer.echo(f"  found   {settings.base_data_file(name)}")
        except TcmrError:
            typer.echo(f"  missing {name}")


for _module in COMMAND_MODULES:
    importlib.import_module(f"flows.commands.{_module}").register(app)


DEBUG_VARIABLE = "TCMR_DEBUG"
"""Set to 1 to get the full traceback of a user error instead of its one paragraph."""


def _user_error(error: BaseException) -> str | None:
    """One paragraph for an error the user caused, or None for a bug (shown in full)."""
    if isinstance(error, TcmrError):
        return str(error)
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point: a user error (a missing file, a bad field) prints one paragraph, exit 2.

    Ctrl-C exits with 130 and no traceback (typer's handling); every writer publishes
    atomically, so an interrupted command leaves the previous version readable.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Every API call of Prefect's client is an httpx INFO line: noise, not progress.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        app(args=argv)
    except Exception as error:
        message = _user_error(error)
        if message is None or debug:
            raise
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        sys.exit(2)
