"""`tcmr build-features` and `tcmr refresh`: the flows' library calls, without Prefect."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flows.commands.options import Device, Store, store_root, torch_device

if TYPE_CHECKING:
    from flows.parameters import DatasetSpec, FeatureRecipe


DataRoot = Annotated[
    Path,
    typer.Option(help="Folder holding each dataset's release layout (3DPW/, pennaction/ ...)."),
]
BaseData = Annotated[
    Path | None,
    typer.Option(
        help="Base-data folder; default: DATA_ROOT/base_data when present (the sample's), "
        "else the `base_data` setting (TCMR_BASE_DATA)."
    ),
]
VocRoot = Annotated[
    Path | None,
    typer.Option(help="PASCAL VOC 2012 root for occluders; default: procedural occluders."),
]
Seed = Annotated[int, typer.Option(help="Seed of the occlusion augmentation.")]
Checkpoint = Annotated[
    Path | None,
    typer.Option(
        "--spin-checkpoint",
        "--checkpoint",
        help="SPIN checkpoint (the backbone, not a TCMR model); default: "
        "spin_model_checkpoint.pth.tar in the base data.",
    ),
]
BatchSize = Annotated[
    int | None,
    typer.Option(min=1, help="Crops per backbone batch; default: 256 on CUDA, 32 on CPU."),
]
DecodeThreads = Annotated[
    int | None,
    typer.Option(
        min=1, help="Threads decoding and cropping frames; default: every core on CUDA, 2 on CPU."
    ),
]
Workers = Annotated[int, typer.Option(min=1, help="Threads extracting shards in parallel.")]
ShardFrames = Annotated[
    int | None, typer.Option(min=1, help="Frames per extraction shard; default: a store shard.")
]


def _recipe(
    occlusion: bool,
    voc_root: Path | None,
    seed: int,
    crop_scale: float | None,
    checkpoint: Path | None,
    device: str | None,
    batch_size: int | None,
    decode_threads: int | None,
) -> FeatureRecipe:
    """The feature recipe of both commands' shared options (the flows take it whole)."""
    from flows.parameters import FeatureRecipe

    if crop_scale is not None and crop_scale <= 0:
        raise typer.BadParameter(f"must be positive, got {crop_scale}", param_hint="--crop-scale")
    return FeatureRecipe(
        occlusion=occlusion,
        voc_root=voc_root,
        occlusion_seed=seed,
        crop_scale=crop_scale,
        checkpoint=checkpoint,
        device=torch_device(device),
        batch_size=batch_size,
        num_decode_threads=decode_threads,
    )


def _run(
    specs: list[DatasetSpec],
    data_root: Path,
    store: str,
    base_data: Path | None,
    recipe: FeatureRecipe,
    workers: int,
    shard_frames: int | None,
) -> None:
    """Build each dataset part in turn (its shards on `workers` threads); one line per group."""
    from flows.parameters import requests_for
    from pipeline.build import build_dataset, check_inputs
    from storage.schema import SHARD_ROWS

    requests = requests_for(specs, data_root, store, recipe, base_data)
    for request in requests:
        check_inputs(request)
    for request in requests:
        result = build_dataset(
            request,
            progress=workers == 1,
            max_workers=workers,
            shard_frames=shard_frames or SHARD_ROWS,
        )
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
            ..., help="3dpw, mpii3d, h36m, insta, pennaction, posetrack (one or more)."
        ),
        split: list[str] = typer.Option(["train"], help="Split(s) to build (repeatable)."),
        data_root: DataRoot = Path("data/sample"),
        root: Path | None = typer.Option(
            None, help="Release layout of the one dataset given; default: under DATA_ROOT."
        ),
        store: Store = None,
        base_data: BaseData = None,
        occlusion: bool = typer.Option(False, help="Occlusion augmentation on the crops."),
        voc_root: VocRoot = None,
        seed: Seed = 0,
        crop_scale: float | None = typer.Option(
            None, help="Crop scale (its own store variant); default: each dataset's official one."
        ),
        checkpoint: Checkpoint = None,
        device: Device = None,
        batch_size: BatchSize = None,
        decode_threads: DecodeThreads = None,
        workers: Workers = 1,
        shard_frames: ShardFrames = None,
    ) -> None:
        """Build feature store groups; unchanged sources are skipped without parsing."""
        from flows.parameters import DatasetSpec
        from pipeline.build import READERS

        unknown = sorted(set(datasets) - set(READERS))
        if unknown:
            raise typer.BadParameter(
                f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(READERS)}",
                param_hint="DATASETS",
            )
        if root is not None and len(datasets) != 1:
            raise typer.BadParameter("--root names one dataset's folder; give one dataset")
        root_of_store = store_root(store)
        specs = [DatasetSpec(dataset=d, splits=split, root=root) for d in datasets]
        recipe = _recipe(
            occlusion, voc_root, seed, crop_scale, checkpoint, device, batch_size, decode_threads
        )
        _run(specs, data_root, root_of_store, base_data, recipe, workers, shard_frames)

    @app.command("refresh")
    def refresh(
        data_root: DataRoot = Path("data/sample"),
        store: Store = None,
        base_data: BaseData = None,
        occlusion: bool = typer.Option(False, help="Refresh the occlusion variant."),
        voc_root: VocRoot = None,
        seed: Seed = 0,
        crop_scale: float | None = typer.Option(
            None, help="Crop scale of the variant; default: each dataset's official one."
        ),
        checkpoint: Checkpoint = None,
        device: Device = None,
        batch_size: BatchSize = None,
        decode_threads: DecodeThreads = None,
        workers: Workers = 1,
        shard_frames: ShardFrames = None,
    ) -> None:
        """Update every store group of a variant: new or changed sequences in, removed out."""
        from flows.parameters import stored_datasets

        store = store_root(store, existing=True)
        recipe = _recipe(
            occlusion, voc_root, seed, crop_scale, checkpoint, device, batch_size, decode_threads
        )
        specs = stored_datasets(store, recipe.variant)
        if not specs:
            typer.echo(f"no {recipe.variant} store groups under {store}")
            return
        _run(specs, data_root, store, base_data, recipe, workers, shard_frames)
