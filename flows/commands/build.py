"""`tcmr build-features` and `tcmr refresh`: the flows' library calls, without Prefect."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pipeline.build import BuildRequest


def _run(requests: list[BuildRequest]) -> None:
    """Build each request in turn and print one line per group."""
    from pipeline.build import build_dataset

    for request in requests:
        result = build_dataset(request, progress=True)
        skipped = sum(result.skipped.values())
        typer.echo(
            f"{result.store}: {result.status}, {result.sequences} sequences, {result.frames} "
            f"frames, {result.windows} windows (parsed {result.parsed}, extracted "
            f"{result.extracted}; +{result.added} ~{result.replaced} -{result.dropped}; "
            f"{skipped} skipped)"
        )


def register(app: typer.Typer) -> None:
    """Add `build-features` and `refresh` to the `tcmr` app."""

    @app.command("build-features")
    def build_features(
        datasets: list[str] = typer.Argument(
            ..., help="3dpw, mpii3d, h36m, insta, pennaction, posetrack."
        ),
        split: list[str] = typer.Option(["train"], help="Split(s) to build (repeatable)."),
        data_root: Path = typer.Option(Path("data/sample"), help="Folder of release layouts."),
        root: Path | None = typer.Option(None, help="Root of a single dataset (overrides)."),
        store: str | None = typer.Option(None, help="Store root; default: the `store` setting."),
        base_data: Path | None = typer.Option(
            None, help="Base data; default: sample's or setting."
        ),
        occlusion: bool = typer.Option(False, help="Occlusion augmentation on the crops."),
        voc_root: Path | None = typer.Option(None, help="PASCAL VOC 2012 root for occluders."),
        seed: int = typer.Option(0, help="Occlusion seed."),
        crop_scale: float | None = typer.Option(None, help="Crop scale (own variant)."),
        checkpoint: Path | None = typer.Option(None, help="SPIN checkpoint."),
        device: str = typer.Option("auto", help="auto, cpu or a torch device."),
        batch_size: int = typer.Option(32, help="Backbone batch size."),
    ) -> None:
        """Build feature store groups; unchanged sources are skipped without parsing."""
        from flows.parameters import DatasetSpec, FeatureRecipe, requests_for

        if root is not None and len(datasets) != 1:
            raise typer.BadParameter("--root names one dataset's folder; give one dataset")
        specs = [DatasetSpec(dataset=d, splits=split, root=root) for d in datasets]
        recipe = FeatureRecipe(
            occlusion=occlusion,
            voc_root=voc_root,
            occlusion_seed=seed,
            crop_scale=crop_scale,
            checkpoint=checkpoint,
            device=device,
            batch_size=batch_size,
        )
        _run(requests_for(specs, data_root, store, recipe, base_data))

    @app.command("refresh")
    def refresh(
        data_root: Path = typer.Option(Path("data/sample"), help="Folder of release layouts."),
        store: str | None = typer.Option(None, help="Store root; default: the `store` setting."),
        base_data: Path | None = typer.Option(
            None, help="Base data; default: sample's or setting."
        ),
        occlusion: bool = typer.Option(False, help="Refresh the occlusion variant."),
        voc_root: Path | None = typer.Option(None, help="PASCAL VOC 2012 root for occluders."),
        seed: int = typer.Option(0, help="Occlusion seed."),
        crop_scale: float | None = typer.Option(None, help="Crop scale of the variant."),
        checkpoint: Path | None = typer.Option(None, help="SPIN checkpoint."),
        device: str = typer.Option("auto", help="auto, cpu or a torch device."),
        batch_size: int = typer.Option(32, help="Backbone batch size."),
    ) -> None:
        """Update every store group of a variant: new or changed sequences in, removed out."""
        from flows.parameters import FeatureRecipe, requests_for, stored_datasets
        from pipeline.build import variant_name
        from storage.settings import get_settings

        store = store or get_settings().store
        specs = stored_datasets(store, variant_name(occlusion, crop_scale))
        if not specs:
            typer.echo(f"no {variant_name(occlusion, crop_scale)} store groups under {store}")
            return
        recipe = FeatureRecipe(
            occlusion=occlusion,
            voc_root=voc_root,
            occlusion_seed=seed,
            crop_scale=crop_scale,
            checkpoint=checkpoint,
            device=device,
            batch_size=batch_size,
        )
        _run(requests_for(specs, data_root, store, recipe, base_data))
