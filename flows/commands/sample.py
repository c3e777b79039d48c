"""`tcmr sample-data DIR`: a small synthetic copy of all six datasets and the base data."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.commands.options import output_folder


def register(app: typer.Typer) -> None:
    """Add `sample-data` to the `tcmr` app."""

    @app.command("sample-data")
    def sample_data_command(
        out: Path = typer.Argument(
            ..., callback=output_folder, help="Folder to write the sample into (created)."
        ),
        seed: int = typer.Option(0, help="Seed of the synthetic body, motions and values."),
    ) -> None:
        """Write every dataset in its release format, plus base data, under OUT."""
        from pipeline.sample import write_sample_data

        for name, folder in write_sample_data(out, seed).items():
            typer.echo(f"{name}: {folder}")
        typer.echo(f"point TCMR_BASE_DATA at {out / 'base_data'} to use the sample's SMPL model")
