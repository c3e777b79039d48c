"""The `tcmr` command: every step by hand, calling the same library functions as the flows.

Each area registers its subcommands from a module in `flows/commands/`; heavy imports
(torch, zarr, prefect) happen inside the commands so `tcmr --help` stays fast.
"""

from __future__ import annotations

import importlib
import logging
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
    help="TCMR pipeline: datasets -> Zarr feature stores -> training, evaluation, inference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root() -> None:
    """TCMR pipeline: datasets -> Zarr feature stores -> training, evaluation, inference."""


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


def main() -> None:
    """Entry point: user errors (a missing file, a bad field) print one clear line, exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Every API call of Prefect's client is an httpx INFO line: noise, not progress.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        app()
    except TcmrError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(2)
