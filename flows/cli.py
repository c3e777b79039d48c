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
COMMAND_MODULES: tuple[str, ...] = ()

app = typer.Typer(
    name="tcmr",
    help="TCMR pipeline: datasets -> Zarr feature stores -> training, evaluation, inference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _module in COMMAND_MODULES:
    importlib.import_module(f"flows.commands.{_module}").register(app)


def main() -> None:
    """Entry point: user errors (a missing file, a bad field) print one clear line, exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except TcmrError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(2)
