"""`tcmr smpl ...`: one-off handling of the licensed SMPL model files."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.commands.options import output_file


def register(app: typer.Typer) -> None:
    """Add the `smpl` sub-command group to the `tcmr` app."""
    smpl_app = typer.Typer(
        help="SMPL model files: convert the licensed .pkl to a chumpy-free .npz.",
        no_args_is_help=True,
    )

    @smpl_app.command("convert")
    def convert(
        src: Path = typer.Argument(..., help="An official SMPL_*.pkl (chumpy is not needed)."),
        dst: Path = typer.Argument(
            ..., callback=output_file, help="The .npz to write (atomically)."
        ),
    ) -> None:
        """Convert an SMPL model pkl into a chumpy-free .npz that loads faster and safely."""
        from model.smpl import convert_smpl

        typer.echo(f"wrote {convert_smpl(src, dst)}")

    app.add_typer(smpl_app, name="smpl")
