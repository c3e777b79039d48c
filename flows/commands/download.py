"""`tcmr download` and `tcmr download-template`: fetch licensed release files from the user's links."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.commands.options import output_folder


def register(app: typer.Typer) -> None:
    """Add `download` and `download-template` to the `tcmr` app."""

    @app.command("download")
    def download(
        dataset: str = typer.Argument(
            ..., help="3dpw, mpii3d, h36m, insta, pennaction, posetrack, base_data or preprocessed."
        ),
        root: Path = typer.Argument(
            ..., callback=output_folder, help="Dataset root the release layout is written under."
        ),
        sources: Path = typer.Option(
            Path("sources.toml"), help="Links file (TOML; see `tcmr download-template`)."
        ),
        quiet: bool = typer.Option(False, help="No progress bars."),
    ) -> None:
        """Fetch a dataset's files (resumable, sha256-verified) and unpack its archives under ROOT."""
        from pipeline.catalog import fetch_sources, load_urls, resolve_sources
        from storage.errors import FormatError

        found = resolve_sources(dataset, load_urls(sources).get(dataset))
        if not found:
            raise FormatError(f"{sources}: no links for dataset {dataset!r}; fill in its table")
        created = not root.exists()
        try:
            files = fetch_sources(found, root, progress=not quiet)
        except BaseException:
            # Kept partial downloads resume on the next run; an empty new root is litter.
            if created and root.is_dir() and not any(root.iterdir()):
                root.rmdir()
            raise
        typer.echo(f"{dataset}: {len(found)} sources verified, {len(files)} files under {root}")

    @app.command("download-template")
    def download_template() -> None:
        """Print a links file listing every known release file, for you to fill in."""
        from pipeline.catalog import template

        typer.echo(template(), nl=False)
