"""Typed flow parameters: pydantic models, so deployments get a checked parameter schema.

Defaults point at the embedded sample (`tcmr sample-data data/sample`) and the local store,
which is what `prefect.yaml`'s deployments and `tcmr demo` run with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.build import CHECKPOINT_NAME, READERS, BuildRequest, variant_name
from storage.reader import store_groups
from storage.schema import SHARD_ROWS
from storage.settings import get_settings

DatasetName = Literal["3dpw", "mpii3d", "h36m", "insta", "pennaction", "posetrack"]
SAMPLE_ROOT = Path("data/sample")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(_Params):
    """One dataset of a run: its splits, and where its files are or come from."""

    dataset: DatasetName
    splits: list[str] = Field(default_factory=lambda: ["train"], min_length=1)
    root: Path | None = None
    """Release-layout folder; default `<data_root>/<the dataset's release folder>`."""
    urls: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    """Catalog path -> link or `{url, sha256}` (see `tcmr download-template`); empty: use root."""

    def resolved_root(self, data_root: Path) -> Path:
        return self.root if self.root is not None else Path(data_root) / READERS[self.dataset][2]


class FeatureRecipe(_Params):
    """Inputs that change the features; a change gives a new variant or a rebuilt version."""

    occlusion: bool = False
    voc_root: Path | None = None
    """PASCAL VOC 2012 root for occluders; procedural occluders when unset."""
    occlusion_seed: int = 0
    crop_scale: float | None = Field(None, gt=0)
    """Overrides each dataset's official crop scale (its own variant)."""
    checkpoint: Path | None = None
    """SPIN checkpoint; default `<base_data>/spin_model_checkpoint.pth.tar`."""
    device: str = "auto"
    """`auto`: CUDA where the extraction runs has it (a Dask GPU worker, not the flow process)."""
    batch_size: int | None = Field(None, ge=1)
    """Crops per backbone batch; default 256 on CUDA, 32 on CPU."""
    num_decode_threads: int | None = Field(None, ge=1)
    """Threads decoding and cropping frames; default every core of the extracting machine on
    CUDA, 2 on CPU (where the backbone's own threads need the cores)."""

    @property
    def variant(self) -> str:
        """The store variant these features go to (`clean`, `occ`, `occ-scale1.1`, ...)."""
        return variant_name(self.occlusion, self.crop_scale)


class Execution(_Params):
    """Where tasks run: threads in the flow process, or an existing Dask cluster."""

    dask_address: str | None = None
    """Scheduler address (`tcp://host:8786`) of an existing cluster; None: local threads."""
    gpu_resource: str | None = None
    """Dask worker resource that extraction tasks require (e.g. `GPU`); None: any worker."""
    max_workers: int = Field(2, ge=1)
    """Threads of the local task runner."""
    shard_frames: int = Field(SHARD_ROWS, ge=1)
    """Frame budget of one extraction task (one segment); a longer sequence is one shard."""


SAMPLE_DATASETS: list[DatasetSpec] = [
    DatasetSpec(dataset="3dpw", splits=["train", "test"]),
    DatasetSpec(dataset="h36m", splits=["train"]),
    DatasetSpec(dataset="pennaction", splits=["train"]),
]


def base_data_folder(data_root: Path, base_data: Path | None) -> Path:
    """The base data given, else the sample's `<data_root>/base_data`, else the setting."""
    if base_data is not None:
        return Path(base_data)
    sample = Path(data_root) / "base_data"
    return sample if sample.is_dir() else get_settings().base_data


def requests_for(
    specs: list[DatasetSpec],
    data_root: Path,
    store: str | None,
    recipe: FeatureRecipe,
    base_data: Path | None,
) -> list[BuildRequest]:
    """One build request per (dataset, split), all with the same recipe and store.

    Device, batch size and decode threads go as given (`auto`, None): the extraction engine
    resolves them on the machine that runs it, which on a Dask cluster is not this one.
    """
    base = base_data_folder(data_root, base_data)
    return [
        BuildRequest(
            dataset=spec.dataset,
            split=split,
            root=spec.resolved_root(data_root),
            store=store or get_settings().store,
            checkpoint=recipe.checkpoint or base / CHECKPOINT_NAME,
            base_data=base,
            occlusion=recipe.occlusion,
            voc_root=recipe.voc_root,
            occlusion_seed=recipe.occlusion_seed,
            crop_scale=recipe.crop_scale,
            device=recipe.device,
            batch_size=recipe.batch_size,
            num_decode_threads=recipe.num_decode_threads,
        )
        for spec in specs
        for split in spec.splits
    ]


def stored_datasets(store: str, variant: str) -> list[DatasetSpec]:
    """The (dataset, splits) that have a committed group of `variant` in the store."""
    splits: dict[str, list[str]] = {}
    for group in store_groups(store):
        parts = group.strip("/").split("/")
        if len(parts) == 3 and parts[0] in READERS and parts[2] == variant:
            splits.setdefault(parts[0], []).append(parts[1])
    return [DatasetSpec(dataset=d, splits=sorted(s)) for d, s in sorted(splits.items())]
