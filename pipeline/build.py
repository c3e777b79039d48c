"""Build or incrementally refresh one (dataset, split, variant) feature store group.

The one function the `build-features` / `refresh` flows and the `tcmr build-features` /
`tcmr refresh` commands call. A cheap digest of the source files (paths, sizes, mtimes) is
compared with the one the store recorded: when it and every feature-affecting input
(checkpoint, crop scale, occluders, seed, code version) match, nothing is parsed or
extracted. Otherwise the dataset is parsed, only new or changed sequences (per-sequence
content hash) are extracted, removed ones are dropped, and a new version is committed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.datasets.records import Quarantine, SequenceRecord
from pipeline.features import extract_to_store
from pipeline.occlusion import OccluderBank, load_voc_occluders, procedural_occluders
from storage.backend import location
from storage.errors import FormatError, MissingFileError
from storage.hashing import file_sha256
from storage.maintenance import plan_refresh
from storage.provenance import Provenance
from storage.reader import content_hashes, open_store
from storage.writer import StoreWriter, read_pointer

# dataset -> (reader module, reader function, folder of the release layout under a data root)
READERS: dict[str, tuple[str, str, str]] = {
    "3dpw": ("pipeline.datasets.pw3d", "read_3dpw", "3DPW"),
    "mpii3d": ("pipeline.datasets.mpii3d", "read_mpii3d", "mpi_inf_3dhp"),
    "h36m": ("pipeline.datasets.h36m", "read_h36m", "h36m"),
    "insta": ("pipeline.datasets.insta", "read_insta", "insta_variety"),
    "pennaction": ("pipeline.datasets.penn_action", "read_penn_action", "pennaction"),
    "posetrack": ("pipeline.datasets.posetrack", "read_posetrack", "posetrack"),
}
CHECKPOINT_NAME = "spin_model_checkpoint.pth.tar"


def variant_name(occlusion: bool, crop_scale: float | None = None) -> str:
    """Store variant of a feature recipe: `occ` / `clean`, plus an explicit crop scale.

    An explicit crop scale gets its own variant so stores of different scales never mix;
    the seed and checkpoint are in the provenance, where a change rebuilds the group.
    """
    name = "occ" if occlusion else "clean"
    return f"{name}-scale{crop_scale:g}" if crop_scale is not None else name


@dataclass(frozen=True)
class BuildRequest:
    """Everything that decides one store group's contents (all small, picklable values)."""

    dataset: str
    split: str
    root: Path
    """The dataset's release-layout folder (e.g. `.../3DPW`)."""
    store: str
    """Root of the stores: a local path or an fsspec URL."""
    checkpoint: Path
    """SPIN `model_checkpoint` whose ResNet-50 makes the features."""
    base_data: Path | None = None
    """Base-data folder (3DPW reads SMPL from it)."""
    occlusion: bool = False
    voc_root: Path | None = None
    """PASCAL VOC 2012 root for occluders; procedural occluders when None."""
    occlusion_seed: int = 0
    crop_scale: float | None = None
    """Overrides each dataset's official crop scale when set."""
    device: str = "cpu"
    batch_size: int = 64
    num_decode_threads: int = 2

    @property
    def variant(self) -> str:
        return variant_name(self.occlusion, self.crop_scale)

    @property
    def group(self) -> str:
        return f"{self.dataset}/{self.split}/{self.variant}"


@dataclass
class BuildResult:
    """What building one group did: small and JSON-able, for logs, artifacts and tests."""

    dataset: str
    split: str
    variant: str
    store: str
    status: Literal["built", "unchanged"]
    sequences: int = 0
    frames: int = 0
    windows: int = 0
    parsed: int = 0
    """Sequences the reader produced (0 when the sources were unchanged)."""
    extracted: int = 0
    """Sequences run through the backbone."""
    added: int = 0
    replaced: int = 0
    dropped: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        """True when the committed sequences differ from the previous version."""
        return self.status == "built" and bool(self.added or self.replaced or self.dropped)


def source_digest(root: Path, dataset: str, split: str) -> str:
    """Digest of every file's relative path, size and mtime under `root`: no file is read."""
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"{root}: dataset root of {dataset} not found (field `root`)")
    digest = hashlib.sha256(f"{dataset}\0{split}\0".encode())
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            stat = path.stat()
            digest.update(
                f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()


def code_version() -> str:
    """Installed package version, as the feature engine records it in provenance."""
    try:
        return importlib.metadata.version("tcmr-pipeline")
    except importlib.metadata.PackageNotFoundError:
        return ""


def occluder_bank(request: BuildRequest) -> OccluderBank | None:
    """The request's occluders: VOC objects when a root is given, else procedural shapes."""
    if not request.occlusion:
        return None
    if request.voc_root is not None:
        return load_voc_occluders(request.voc_root, cache_dir=Path(request.voc_root) / ".tcmr")
    return procedural_occluders(request.occlusion_seed)


def read_records(request: BuildRequest, quarantine: Quarantine) -> Iterator[SequenceRecord]:
    """Parse the request's dataset split with its reader (3DPW also gets the base data)."""
    if request.dataset not in READERS:
        raise FormatError(
            f"unknown dataset {request.dataset!r} (field `dataset`); known: {sorted(READERS)}"
        )
    module, function, _ = READERS[request.dataset]
    reader = getattr(importlib.import_module(module), function)
    if request.dataset == "3dpw":
        return reader(request.root, request.split, quarantine, base_data=request.base_data)
    return reader(request.root, request.split, quarantine)


def _unchanged(stored: Provenance, expected: Provenance, any_scale: bool) -> bool:
    if any_scale:
        expected = dataclasses.replace(expected, crop_scale=stored.crop_scale)
    return not stored.differences(expected)


def _group_counts(request: BuildRequest) -> tuple[int, int, int]:
    store = open_store(request.store, request.group)
    protocol = "train_stride1" if request.split == "train" else "eval_tcmr"
    return len(store.sequences), len(store), len(store.windows(protocol))


def build_dataset(request: BuildRequest, *, progress: bool = False) -> BuildResult:
    """Bring `request.group` up to date with its sources; do no work when nothing changed.

    Raises TcmrError (missing root, unreadable sources, ...) before anything is committed,
    so a failed build leaves the store's previous version in place.
    """
    started = time.perf_counter()
    digest = source_digest(request.root, request.dataset, request.split)
    if not request.checkpoint.is_file():
        raise MissingFileError(
            f"{request.checkpoint}: backbone checkpoint not found (`checkpoint`)"
        )
    bank = occluder_bank(request)
    expected = Provenance(
        backbone_sha256=file_sha256(request.checkpoint),
        crop_scale=float(request.crop_scale or 0.0),
        occlusion_bank_hash=bank.content_hash if bank is not None else "",
        occlusion_seed=request.occlusion_seed if bank is not None else None,
        code_version=code_version(),
        source_manifest_digest=digest,
    )
    loc = location(request.store)
    pointer = read_pointer(loc, request.group)
    stored = Provenance.from_dict(pointer["provenance"]) if pointer is not None else None
    result = BuildResult(
        request.dataset, request.split, request.variant, f"{loc.root}/{request.group}", "built"
    )
    if stored is not None and _unchanged(stored, expected, request.crop_scale is None):
        result.status = "unchanged"
        result.sequences, result.frames, result.windows = _group_counts(request)
        return result

    quarantine = Quarantine()
    records = list(read_records(request, quarantine))
    result.parsed = len(records)
    if not records:
        # Never commit an empty group over a built one: unreadable sources fail the part.
        reasons = "; ".join(f"{s.key}: {s.reason}" for s in quarantine.skips[:5])
        raise FormatError(
            f"{request.root}: no usable {request.dataset} {request.split} sequences"
            + (f" ({reasons})" if reasons else "")
        )
    incoming = {(r.name, r.person_id): r.content_hash for r in records}
    reusable = stored is not None and _unchanged(
        dataclasses.replace(stored, source_manifest_digest=digest),
        expected,
        request.crop_scale is None,
    )
    plan = plan_refresh(content_hashes(loc, request.group) if reusable else {}, incoming)
    summary = extract_to_store(
        records,
        request.store,
        request.group,
        request.checkpoint,
        device=request.device,
        crop_scale=request.crop_scale,
        occluders=bank,
        seed=request.occlusion_seed,
        batch_size=request.batch_size,
        num_decode_threads=request.num_decode_threads,
        # The old digest keeps a reusable group in append mode; the commit below updates it.
        source_manifest_digest=stored.source_manifest_digest if reusable and stored else digest,
        progress=progress,
    )
    # Second commit: drop removed sequences and record the digest even when every
    # sequence was already stored (a killed run, or a change outside any sequence).
    committed = read_pointer(loc, request.group)
    if committed is not None:
        provenance = Provenance.from_dict(committed["provenance"])
        writer = StoreWriter(
            loc,
            request.group,
            dataclasses.replace(provenance, source_manifest_digest=digest),
            mode="append",
        )
        for name, person_id in plan.drop:
            writer.drop(name, person_id)
        writer.commit()
    failed = {s.key for s in summary.skipped}
    keys = {(r.name, r.person_id): r.key for r in records}
    result.extracted = summary.sequences
    result.added = sum(keys[k] not in failed for k in plan.add)
    result.replaced = sum(keys[k] not in failed for k in plan.replace)
    result.dropped = len(plan.drop)
    result.skipped = dict(Counter(s.reason for s in [*quarantine.skips, *summary.skipped]))
    result.sequences, result.frames, result.windows = _group_counts(request)
    result.seconds = time.perf_counter() - started
    return result
