"""`tcmr import-db` and `tcmr store ...`: bring official db files in, inspect and compact stores."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from flows.commands.options import Store, store_root

DB_SPLITS = ("train", "val", "test")
"""The splits the official db files come in (`<dataset>_<split>_db.pt`)."""


def _split(value: str) -> str:
    if value not in DB_SPLITS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(DB_SPLITS)}")
    return value


def _dataset(value: str) -> str:
    from storage.importdb import DATASETS

    if value not in DATASETS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(DATASETS)}")
    return value


def _features_dtype(value: str) -> str:
    from storage.schema import FEATURE_DTYPES

    if value not in FEATURE_DTYPES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(FEATURE_DTYPES)}")
    return value


def _variant(value: str) -> str:
    """A variant is one path segment of the group name `<dataset>/<split>/<variant>`."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
        raise typer.BadParameter(f"{value!r}: use letters, digits, '.', '_' and '-' only")
    return value


def register(app: typer.Typer) -> None:
    """Add `import-db` and the `store` sub-command group to the `tcmr` app."""
    store_app = typer.Typer(help="Zarr feature stores: inspect, compact.", no_args_is_help=True)

    @app.command("import-db")
    def import_db_command(
        file: Path = typer.Argument(..., help="An official *_db.pt (joblib) or insta_train_db.h5."),
        dataset: str = typer.Option(
            ..., callback=_dataset, help="3dpw, mpii3d, h36m, posetrack, pennaction or insta."
        ),
        split: str = typer.Option(..., callback=_split, help="train, val or test."),
        variant: str = typer.Option(
            "base", callback=_variant, help="Store variant name, e.g. occ or tight."
        ),
        store: Store = None,
        crop_scale: float | None = typer.Option(
            None, help="Feature crop scale of the file (default: the released dbs' scale)."
        ),
        features_dtype: str = typer.Option(
            "float32",
            callback=_features_dtype,
            help="Stored feature dtype: float32 keeps the db's features bit for bit (evaluation "
            "matches the official evaluate.py); float16 halves the store.",
        ),
    ) -> None:
        """Import (or refresh from) an official preprocessed db file into a store."""
        from storage.importdb import import_db

        group = f"{dataset}/{split}/{variant}"
        root = store_root(store)
        plan = import_db(
            file, dataset, split, root, group, crop_scale, features_dtype=features_dtype
        )
        typer.echo(
            f"{root}/{group}: {len(plan.add)} added, {len(plan.replace)} replaced, "
            f"{len(plan.drop)} dropped, {len(plan.unchanged)} unchanged sequences"
        )

    @store_app.command("info")
    def info(
        group: str | None = typer.Argument(
            None, help="Store group, e.g. 3dpw/test/clean; default: every group of the store."
        ),
        store: Store = None,
    ) -> None:
        """Shape, sequences, windows and provenance of one store group (or all of them)."""
        from storage.reader import open_store, store_groups
        from storage.writer import WINDOW_PROTOCOLS

        root = store_root(store, existing=True)
        groups = [group] if group else store_groups(root)
        if not groups:
            typer.echo(f"no stores under {root}")
        for name in groups:
            opened = open_store(root, name)
            frames = sum(seq.length for seq in opened.sequences)
            typer.echo(
                f"{name}: {frames} frames, {len(opened.sequences)} sequences, "
                f"{len(opened.segments)} segments, commit {opened.pointer['commit']}"
            )
            windows = ", ".join(f"{p} {len(opened.windows(p))}" for p in WINDOW_PROTOCOLS)
            typer.echo(f"  windows: {windows}")
            for key, value in opened.provenance.to_dict().items():
                typer.echo(f"  {key}: {value}")

    @store_app.command("compact")
    def compact_command(
        group: str = typer.Argument(..., help="Store group, e.g. 3dpw/test/clean."),
        store: Store = None,
    ) -> None:
        """Rewrite a store group densely and delete data no commit references."""
        from storage.maintenance import compact

        compacted = compact(store_root(store), group)
        typer.echo(f"{group}: {len(compacted)} frames in {len(compacted.segments)} segment")

    app.add_typer(store_app, name="store")
