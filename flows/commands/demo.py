"""`tcmr demo --out DIR`: the main job on the embedded sample, end to end."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.commands.options import output_folder, torch_device


def register(app: typer.Typer) -> None:
    """Add `demo` to the `tcmr` app."""

    @app.command("demo")
    def demo(
        out: Path = typer.Option(
            Path("runs/demo"), callback=output_folder, help="Folder for sample, stores and runs."
        ),
        device: str = typer.Option(
            "cpu", help="auto, cpu, cuda, cuda:1 ...; the demo runs on cpu unless told."
        ),
    ) -> None:
        """Write the sample, run build-features, a short training and an evaluation."""
        from flows.demo import run_demo

        result = run_demo(out, device=torch_device(device))
        typer.echo(f"store:      {result.store}")
        typer.echo(f"checkpoint: {result.checkpoint}")
        typer.echo(f"metrics:    {result.metrics}")
        typer.echo(f"report:     {result.report}")
