"""Build or incrementally refresh one (dataset, split, variant) feature store group.

Three steps the `build-features` / `refresh` flows run as tasks and `build_dataset` (the
`tcmr build-features` / `tcmr refresh` commands) runs in-process:

1. `plan_build`: a cheap digest of the source files (paths, sizes, mtimes) is compared with
   the one the store recorded; when it and every value-affecting input (checkpoint, crop
   scale, occluders, seed, label body model, code version) match, nothing is parsed.
   Otherwise the dataset is parsed, new or changed sequences (per-sequence content hash) are
   staged one file each next to the store, and grouped into shards of about `SHARD_ROWS`
   frames.
2. `extract_shard`: one shard's staged sequences through the backbone into its own segment.
3. `finalize_build`: one atomic commit adopts every shard's segment and drops removed
   sequences (the store writes the window indexes), then the staging folder goes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib
import importlib.metadata
import io
import os
import pickle
import posixpath
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import fsspec
import numpy as np

from pipeline.datasets.records import ImageRef, Quarantine, RecordValue, SequenceRecord, Skip
from pipeline.features import CropSettings, extract_to_segment
from pipeline.occlusion import OccluderBank, load_voc_occluders, procedural_occluders
from storage.backend import is_url, location
from storage.errors import FormatError, MissingFileError, StoreError, TcmrError
from storage.hashing import file_sha256, hash_files
from storage.maintenance import STAGING, plan_refresh
from storage.provenance import Provenance
from storage.reader import content_hashes, open_store
from storage.schema import SHARD_ROWS
from storage.settings import BASE_DATA_ORIGINS, get_settings
from storage.windows import eval_keep_valid
from storage.writer import (
    Segment,
    SegmentWriter,
    StoreWriter,
    flock,
    read_pointer,
    reusable_provenance,
)

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
    """A torch device, or `auto`: resolved by the engine on the machine that extracts."""
    batch_size: int | None = None
    """Crops per backbone batch; None: `features.extraction_defaults` for the device."""
    num_decode_threads: int | None = None

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


LABEL_MODEL_FILES: dict[str, tuple[str, ...]] = {
    "3dpw": ("SMPL_NEUTRAL.pkl", "J_regressor_extra.npy", "J_regressor_h36m.npy"),
}
"""Base-data files a dataset's reader computes stored labels from (3DPW poses SMPL)."""


def label_model_digest(request: BuildRequest) -> str:
    """sha256 of the request's `LABEL_MODEL_FILES` ("" for a dataset without any).

    They lie outside the dataset root, so neither the source digest nor the per-sequence
    content hashes see them change; the provenance does. A missing file is skipped here:
    the reader reports it when it needs it.
    """
    names = LABEL_MODEL_FILES.get(request.dataset, ())
    if not names:
        return ""
    settings = get_settings(base_data=request.base_data)
    paths = []
    for name in names:
        try:
            paths.append(settings.base_data_file(name))
        except MissingFileError:
            continue
    return hash_files(paths, extra="\0".join(path.name for path in paths).encode())


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


_LABELS = ("frame_index", "joints2d", "joints3d", "pose", "shape", "has_smpl", "bbox", "valid")


STAGING_FORMAT = 2
"""Version of the staged `.npz` layout; part of the staging folder's name, so a rerun never
reads files another layout wrote (2: TFRecord values are references, not bytes)."""


def stage_record(record: SequenceRecord) -> bytes:
    """One sequence as `.npz` bytes: label arrays and image references (never pixels).

    TFRecord values are staged as their record's offset, length and CRC plus the feature
    and index, so staging a dataset of encoded frames copies none of them.
    """
    values = [ref.record for ref in record.images]
    buffer = io.BytesIO()
    np.savez(
        buffer,
        **{name: getattr(record, name) for name in _LABELS},
        image_path=np.asarray([ref.path for ref in record.images], dtype=np.str_),
        image_frame=np.asarray([-1 if r.frame is None else r.frame for r in record.images]),
        image_record=np.asarray(
            [(-1, 0, 0, 0) if v is None else (v.offset, v.length, v.crc, v.index) for v in values],
            dtype=np.int64,
        ).reshape(len(values), 4),
        image_feature=np.asarray(["" if v is None else v.feature for v in values], dtype=np.str_),
        text=np.asarray([record.dataset, record.split, record.name, record.content_hash]),
        numbers=np.asarray([record.person_id, record.fps, record.crop_scale], dtype=np.float64),
        already_cropped=np.asarray(record.already_cropped),
    )
    return buffer.getvalue()


def _staged_ref(path: str, frame: int, record: np.ndarray, feature: str) -> ImageRef:
    offset, length, crc, index = (int(v) for v in record)
    value = None if offset < 0 else RecordValue(offset, length, crc, feature, index)
    return ImageRef(path, None if frame < 0 else frame, value)


def load_staged(blob: bytes, source: str) -> SequenceRecord:
    """Rebuild the `SequenceRecord` that `stage_record` wrote (`source` names it in errors)."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise FormatError(f"{source}: not a staged sequence ({error})") from error
    fields = (*_LABELS, "image_path", "image_frame", "image_record", "image_feature", "text")
    missing = [k for k in (*fields, "numbers", "already_cropped") if k not in arrays]
    if missing:
        raise FormatError(f"{source}: staged sequence lacks field `{missing[0]}`")
    images = [
        _staged_ref(str(path), int(frame), record, str(feature))
        for path, frame, record, feature in zip(
            arrays["image_path"],
            arrays["image_frame"],
            arrays["image_record"],
            arrays["image_feature"],
            strict=True,
        )
    ]
    dataset, split, name, content_hash = (str(v) for v in arrays["text"])
    person_id, fps, crop_scale = arrays["numbers"]
    return SequenceRecord(
        dataset=dataset,
        split=split,
        name=name,
        person_id=int(person_id),
        fps=float(fps),
        images=images,
        content_hash=content_hash,
        crop_scale=float(crop_scale),
        already_cropped=bool(arrays["already_cropped"]),
        **{label: arrays[label] for label in _LABELS},
    )


@dataclass(frozen=True)
class Shard:
    """Staged sequence files that one extraction task turns into one segment."""

    index: int
    files: tuple[str, ...]
    frames: int


@dataclass
class BuildPlan:
    """What `plan_build` decided for one group: small values only (paths, keys, counts)."""

    request: BuildRequest
    result: BuildResult
    """Filled in so far: status, parsed, reader skips; `unchanged` means nothing to do."""
    provenance: Provenance | None = None
    """The provenance the commit records (None when unchanged)."""
    append: bool = False
    """Keep the committed sequences (same recipe) instead of rebuilding the group."""
    staging: str = ""
    """Folder (in the store's filesystem) holding the staged sequence files."""
    shards: list[Shard] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    drop: list[tuple[str, int]] = field(default_factory=list)
    started: float = 0.0
    """`time.time()` when planning began (the result's seconds span all three steps)."""


@dataclass(frozen=True)
class ShardResult:
    """One extracted shard: its uncommitted segment (None if no sequence made it) and skips."""

    shard: int
    segment: Segment | None
    sequences: int
    frames: int
    skipped: list[Skip] = field(default_factory=list)


def group_shards(staged: list[tuple[str, int]], shard_frames: int) -> list[Shard]:
    """Consecutive staged files grouped by a frame budget (a long sequence is one shard)."""
    groups: list[list[tuple[str, int]]] = [[]]
    for path, frames in staged:
        if groups[-1] and sum(n for _, n in groups[-1]) + frames > shard_frames:
            groups.append([])
        groups[-1].append((path, frames))
    return [
        Shard(i, tuple(p for p, _ in group), sum(n for _, n in group))
        for i, group in enumerate(groups)
        if group
    ]


def _record_scale(request: BuildRequest, records: list[SequenceRecord]) -> float:
    """The group's one crop scale: the request's, else the dataset rule every record shares."""
    if request.crop_scale is not None:
        return float(request.crop_scale)
    scale = records[0].crop_scale
    for record in records:
        if record.crop_scale != scale:
            raise TcmrError(
                f"{record.key}: crop scale {record.crop_scale} differs from {scale} of the other "
                f"sequences in store group {request.group}; pass one crop scale for the group"
            )
    return float(scale)


def _missing_checkpoint(request: BuildRequest) -> str:
    """Where the missing SPIN checkpoint was looked for, and how to point at it."""
    where = (
        "the base-data folder (--base-data / `base_data`, else DATA_ROOT/base_data when "
        "present, else the `base_data` setting TCMR_BASE_DATA)"
        if request.base_data is not None
        and request.checkpoint == request.base_data / CHECKPOINT_NAME
        else "the SPIN checkpoint given (--spin-checkpoint / `checkpoint`)"
    )
    return (
        f"{request.checkpoint} not found: the backbone is read from {where}; give "
        f"--spin-checkpoint or the folder that holds {CHECKPOINT_NAME}, which comes from "
        f"{BASE_DATA_ORIGINS[CHECKPOINT_NAME]}"
    )


def check_inputs(request: BuildRequest) -> None:
    """The request's dataset root and SPIN checkpoint exist, else a MissingFileError.

    A command checks every part's inputs with this before building any part, so a typo in
    the last dataset does not surface only after the first ones were extracted.
    """
    if not Path(request.root).is_dir():
        raise MissingFileError(
            f"{request.root}: dataset root of {request.dataset} not found (field `root`)"
        )
    if not request.checkpoint.is_file():
        raise MissingFileError(_missing_checkpoint(request))


def plan_build(request: BuildRequest, shard_frames: int = SHARD_ROWS) -> BuildPlan:
    """Parse the sources if they changed and stage the sequences that need extraction.

    Raises TcmrError (missing root or checkpoint, unreadable sources, ...) before anything
    is staged or committed, so a failed part leaves the store's previous version in place.
    """
    started = time.time()
    check_inputs(request)
    digest = source_digest(request.root, request.dataset, request.split)
    bank = occluder_bank(request)
    expected = Provenance(
        backbone_sha256=file_sha256(request.checkpoint),
        crop_scale=float(request.crop_scale or 0.0),
        occlusion_bank_hash=bank.content_hash if bank is not None else "",
        occlusion_seed=request.occlusion_seed if bank is not None else None,
        label_model_sha256=label_model_digest(request),
        code_version=code_version(),
        source_manifest_digest=digest,
    )
    loc = location(request.store)
    pointer = read_pointer(loc, request.group, any_version=True)
    stored = reusable_provenance(pointer, f"{loc.root}/{request.group}")
    result = BuildResult(
        request.dataset, request.split, request.variant, f"{loc.root}/{request.group}", "built"
    )
    plan = BuildPlan(request, result, started=started)
    # Windows indexed under another evaluation rule (a store of an older build) are redone.
    indexed = pointer is not None and pointer.get("eval_keep_valid") == eval_keep_valid(
        request.dataset
    )
    if stored is not None and indexed and _unchanged(stored, expected, request.crop_scale is None):
        result.status = "unchanged"
        loc.delete(f"{STAGING}/{request.group}")  # a plan abandoned before the sources reverted
        result.sequences, result.frames, result.windows = _group_counts(request)
        result.seconds = time.time() - started
        return plan

    quarantine = Quarantine()
    records = list(read_records(request, quarantine))
    result.parsed = len(records)
    result.skipped = dict(Counter(s.reason for s in quarantine.skips))
    if not records:
        # Never commit an empty group over a built one: unreadable sources fail the part.
        reasons = "; ".join(f"{s.key}: {s.reason}" for s in quarantine.skips[:5])
        raise FormatError(
            f"{request.root}: no usable {request.dataset} {request.split} sequences"
            + (f" ({reasons})" if reasons else "")
        )
    plan.provenance = dataclasses.replace(expected, crop_scale=_record_scale(request, records))
    plan.append = stored is not None and not stored.differences(
        dataclasses.replace(plan.provenance, source_manifest_digest=stored.source_manifest_digest)
    )
    refresh = plan_refresh(
        content_hashes(loc, request.group) if plan.append else {},
        {(r.name, r.person_id): r.content_hash for r in records},
    )
    keys = {(r.name, r.person_id): r.key for r in records}
    plan.added = [keys[k] for k in refresh.add]
    plan.replaced = [keys[k] for k in refresh.replace]
    plan.drop = list(refresh.drop)
    to_write = set(refresh.to_write)
    # The staging folder is named by everything that decides its shards' segments, so a
    # rerun after a kill or a failure finds the shards already extracted and adopts them.
    work = hashlib.sha256(repr(sorted(plan.provenance.to_dict().items())).encode())
    for record in records:
        if (record.name, record.person_id) in to_write:
            work.update(f"{record.name}\0{record.person_id}\0{record.content_hash}\n".encode())
    work.update(f"shard_frames={shard_frames} staging_format={STAGING_FORMAT}".encode())
    fs, base = loc.filesystem()
    group_staging = f"{base}/{STAGING}/{request.group}"
    plan.staging = f"{group_staging}/{work.hexdigest()[:16]}"
    for old in fs.ls(group_staging, detail=False) if fs.exists(group_staging) else []:
        if old.rstrip("/").rsplit("/", 1)[-1] != plan.staging.rsplit("/", 1)[-1]:
            fs.rm(old, recursive=True)  # another plan's leftovers
    staged = []
    try:
        if not is_url(loc.root):  # object stores have no folders, and s3fs would create a bucket
            fs.makedirs(plan.staging, exist_ok=True)
        for i, record in enumerate(r for r in records if (r.name, r.person_id) in to_write):
            path = f"{plan.staging}/{i:06d}.npz"
            fs.pipe_file(path, stage_record(record))
            staged.append((path, len(record)))
    except (FileNotFoundError, PermissionError) as error:
        raise StoreError(
            f"{loc.root}: cannot stage sequences under {plan.staging} ({error}); check the "
            "store root, its bucket and the credentials (field `store`)"
        ) from error
    plan.shards = group_shards(staged, shard_frames)
    return plan


def _finished_shard(fs: fsspec.AbstractFileSystem, marker: str) -> ShardResult | None:
    """The result a shard marker records; None when absent or cut short (a killed write)."""
    try:
        done = pickle.loads(fs.cat_file(marker))
    except (FileNotFoundError, pickle.UnpicklingError, EOFError, ValueError, AttributeError):
        return None
    return done if isinstance(done, ShardResult) else None


def extract_shard(request: BuildRequest, shard: Shard, *, progress: bool = False) -> ShardResult:
    """Extract one shard's staged sequences into a new segment of the request's group."""
    loc = location(request.store)
    fs, base = loc.filesystem()
    marker = f"{posixpath.dirname(shard.files[0])}/shard-{shard.index:06d}.done"
    done = _finished_shard(fs, marker)
    if done is not None and (
        done.segment is None
        or fs.exists(f"{base}/{request.group}/segments/{done.segment.segment_id}")
    ):
        return done
    records = [load_staged(fs.cat_file(path), path) for path in shard.files]
    writer = SegmentWriter(loc, request.group)
    summary = extract_to_segment(
        records,
        writer,
        request.checkpoint,
        CropSettings(request.crop_scale, occluder_bank(request), request.occlusion_seed),
        device=request.device,
        batch_size=request.batch_size,
        num_decode_threads=request.num_decode_threads,
        progress=progress,
    )
    segment = writer.close()
    result = ShardResult(
        shard.index,
        segment if segment.sequences else None,
        summary.sequences,
        summary.frames,
        list(summary.skipped),
    )
    fs.pipe_file(marker, pickle.dumps(result))
    return result


def discard_staging(plan: BuildPlan) -> None:
    """Remove the plan's staged sequence files and shard markers once they are committed."""
    if plan.staging:
        fs, _ = location(plan.request.store).filesystem()
        if fs.exists(plan.staging):
            fs.rm(plan.staging, recursive=True)


def finalize_build(plan: BuildPlan, shards: list[ShardResult]) -> BuildResult:
    """Commit every shard's segment and the drops as one new version; return the summary."""
    result = dataclasses.replace(plan.result, skipped=dict(plan.result.skipped))
    if result.status == "unchanged":
        return result
    if plan.provenance is None:
        raise TcmrError(f"{result.store}: the build plan has no provenance to commit")
    request = plan.request
    writer = StoreWriter(
        request.store,
        request.group,
        plan.provenance,
        mode="append" if plan.append else "overwrite",
        eval_keep_valid=eval_keep_valid(request.dataset),
    )
    for name, person_id in plan.drop:
        writer.drop(name, person_id)
    for shard in sorted(shards, key=lambda s: s.shard):
        if shard.segment is not None:
            writer.adopt(shard.segment)
    writer.commit()
    discard_staging(plan)
    failed = {skip.key for shard in shards for skip in shard.skipped}
    result.extracted = sum(shard.sequences for shard in shards)
    result.added = sum(key not in failed for key in plan.added)
    result.replaced = sum(key not in failed for key in plan.replaced)
    result.dropped = len(plan.drop)
    for shard in shards:
        for skip in shard.skipped:
            result.skipped[skip.reason] = result.skipped.get(skip.reason, 0) + 1
    result.sequences, result.frames, result.windows = _group_counts(request)
    result.seconds = time.time() - plan.started
    return result


@contextlib.contextmanager
def build_lock(request: BuildRequest) -> Iterator[None]:
    """Refuse a second build of the same group on a local store while one runs.

    Two builds of one group would stage into the same folder and each delete what the other
    still reads. The lock is an `flock` on `<store>/.staging/<group>.lock`, which the kernel
    releases when its process ends, killed or not. Object stores have no such lock: there two
    builds redo each other's work, and only their commits are checked against each other.
    """
    loc = location(request.store)
    if is_url(loc.root):
        yield
        return
    root = Path(loc.root.removeprefix("file://"))
    path = root / STAGING / f"{request.group}.lock"
    folders = [path.parent, *path.parent.parents[: len(path.parent.relative_to(root).parts)]]
    created = [folder for folder in reversed(folders) if not folder.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise StoreError(
            f"{loc.root}: the store root is not a folder ({error}) (field `store`)"
        ) from error
    try:
        with open(path, "a+b") as handle:
            try:
                flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # unlocked where FS has no locks
            except BlockingIOError as error:
                raise StoreError(
                    f"{loc.root}/{request.group}: another build of this group is running on "
                    f"this store (it holds {path}); wait for it to finish, or stop it and run "
                    "again"
                ) from error
            yield
    finally:
        if created:  # a build refused before it wrote anything leaves no store behind
            path.unlink(missing_ok=True)
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty


def build_dataset(
    request: BuildRequest,
    *,
    progress: bool = False,
    max_workers: int = 1,
    shard_frames: int = SHARD_ROWS,
) -> BuildResult:
    """Bring `request.group` up to date: plan, extract the shards (threads), commit once.

    Raises TcmrError before anything is committed, so a failed build leaves the store's
    previous version in place; a rerun adopts the shards the failed or killed run finished.
    A second build of the group on the same local store meanwhile is refused (`build_lock`).
    """
    with build_lock(request):
        plan = plan_build(request, shard_frames)
        if max_workers > 1 and len(plan.shards) > 1:
            with ThreadPoolExecutor(max_workers) as pool:
                shards = list(pool.map(lambda s: extract_shard(request, s), plan.shards))
        else:
            shards = [extract_shard(request, s, progress=progress) for s in plan.shards]
        return finalize_build(plan, shards)
