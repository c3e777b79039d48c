"""Feature extraction: frames -> official crops -> ResNet-50 -> float16 features in a store.

Where the official scripts crop a whole sequence, stack it on the GPU and run fp32 batches of
200 in one process, this engine decodes and crops in threads (frame chunks; a video's chunks,
over all the records of its segments, take turns on one forward reader, so each video is
decoded once), fills large batches across sequence boundaries, and keeps the device busy
while the next batch is prepared. Each sequence is written through the store writer as soon
as its last frame is through the backbone, so a killed run resumes at the first sequence the
store does not hold.
"""

from __future__ import annotations

import functools
import importlib.metadata
import itertools
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from model.backbone import load_spin_backbone
from pipeline.crop import CROP_SIZE, FrameSources, VideoFrameReader, crop_image, decode_ref
from pipeline.datasets.records import Quarantine, SequenceRecord, Skip
from pipeline.datasets.tfrecord import SourceChangedError
from pipeline.occlusion import OccluderBank, frame_rng, occlude
from pipeline.runner import AUTOCAST_CHECK_FRAMES, BackboneRunner
from storage.backend import location
from storage.errors import FormatError, TcmrError
from storage.hashing import file_sha256
from storage.layout import FEATURE_DIM
from storage.provenance import Provenance
from storage.reader import content_hashes
from storage.schema import SHARD_ROWS
from storage.settings import get_settings
from storage.writer import SegmentWriter, StoreWriter, read_pointer, reusable_provenance

CHUNK_FRAMES = 32
"""Frames per decode task (a record over several videos is one task)."""


class FrameError(FormatError):
    """A frame that cannot be read or cropped; it fails its sequence, which is quarantined."""

    def __init__(self, path: str, frame: int, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.frame = frame


@dataclass
class ExtractionSummary:
    """What a run did, for the log, the Prefect artifact and the benchmark."""

    device: str
    precision: str
    frames: int = 0
    sequences: int = 0
    reused_sequences: int = 0
    """Sequences the store already held (a resumed or repeated run)."""
    skipped: list[Skip] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    autocast_max_abs_diff: float | None = None
    autocast_mean_abs_diff: float | None = None

    @property
    def frames_per_second(self) -> float:
        total = self.stage_seconds.get("total", 0.0)
        return self.frames / total if total > 0 else 0.0

    def render(self) -> str:
        lines = [
            f"device {self.device} ({self.precision}): {self.frames} frames in "
            f"{self.sequences} sequences, {self.frames_per_second:.1f} frames/s; "
            f"{self.reused_sequences} sequences already stored, {len(self.skipped)} skipped",
            "time per stage (s): "
            + ", ".join(f"{name} {seconds:.2f}" for name, seconds in self.stage_seconds.items()),
        ]
        if self.autocast_max_abs_diff is not None:
            lines.append(
                f"{self.precision} vs IEEE fp32 on up to {AUTOCAST_CHECK_FRAMES} frames of the "
                "first batch: max |diff| "
                f"{self.autocast_max_abs_diff:.4g}, mean |diff| {self.autocast_mean_abs_diff:.4g}"
            )
        lines += [f"skipped {s.key}: {s.file} ({s.field}): {s.reason}" for s in self.skipped]
        return "\n".join(lines)


@dataclass(frozen=True)
class CropSettings:
    """How crops are made: crop scale override, occluder bank and its seed."""

    scale: float | None = None
    """Overrides each record's dataset crop scale when set."""
    occluders: OccluderBank | None = None
    seed: int = 0


def sequence_crops(
    record: SequenceRecord,
    start: int,
    stop: int,
    settings: CropSettings,
    videos: dict[str, VideoFrameReader] | None = None,
) -> np.ndarray:
    """uint8 (stop - start, 224, 224, 3) crops of frames [start, stop) of one record.

    `videos` lends open video readers (see `FrameSources`). Raises FrameError naming the
    file and frame when a frame cannot be decoded or cropped, and SourceChangedError when a
    TFRecord changed since the reader parsed it.
    """
    scale = settings.scale if settings.scale is not None else record.crop_scale
    out = np.empty((stop - start, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    with FrameSources(videos) as sources:
        for t in range(start, stop):
            ref = record.images[t]
            try:
                image = decode_ref(ref, sources)
            except SourceChangedError:
                raise  # the build is out of date, not the frame bad: fail, do not quarantine
            except TcmrError as error:
                raise FrameError(ref.path, t, str(error)) from error
            if record.already_cropped:
                if image.shape[:2] != (CROP_SIZE, CROP_SIZE):
                    raise FrameError(
                        ref.path,
                        t,
                        f"{ref.path}: frame {t} of {record.key} is {image.shape[1]}x"
                        f"{image.shape[0]}, expected an already-cropped {CROP_SIZE}x{CROP_SIZE}",
                    )
                crop = image
            else:
                try:
                    crop = crop_image(image, record.bbox[t], scale)
                except ValueError as error:
                    raise FrameError(ref.path, t, f"{record.key} frame {t}: {error}") from error
            if settings.occluders is not None:
                crop = occlude(crop, settings.occluders, frame_rng(settings.seed, record.key, t))
            out[t - start] = crop
    return out


def video_of(record: SequenceRecord) -> str | None:
    """The one video all frames of `record` come from, or None."""
    paths = {ref.path if ref.kind == "video" else None for ref in record.images}
    return paths.pop() if len(paths) == 1 else None


def _chunks(record: SequenceRecord, video: str | None) -> list[tuple[int, int]]:
    """Decode tasks of one record (`video`: its one video): frame chunks, or one task for a
    record over several videos (each is read forward by the task's own readers)."""
    length = len(record)
    if video is None and any(ref.kind == "video" for ref in record.images):
        return [(0, length)]
    return [(s, min(s + CHUNK_FRAMES, length)) for s in range(0, length, CHUNK_FRAMES)]


class VideoTurns:
    """One forward reader per video for a whole run, lent to its decode tasks in turn.

    The tasks over one video (the chunks of a record, and the records of its segments, as
    MPI-INF-3DHP splits a camera video) take numbered tickets when submitted and run in
    ticket order, so the video is decoded once, forward, however many threads decode. The
    pool dequeues tasks in submission order, so a task only ever waits for running ones.
    """

    def __init__(self, keep: int) -> None:
        self._changed = threading.Condition()
        self._issued: dict[str, int] = {}
        self._serving: dict[str, int] = {}
        self._readers: OrderedDict[str, VideoFrameReader] = OrderedDict()
        self._keep = keep
        """Idle readers kept open (the least recently used beyond that are closed)."""

    def ticket(self, path: str) -> int:
        with self._changed:
            number = self._issued.get(path, 0)
            self._issued[path] = number + 1
            return number

    @contextmanager
    def turn(self, path: str, ticket: int) -> Iterator[dict[str, VideoFrameReader]]:
        """The readers to lend `sequence_crops`, once every earlier ticket of `path` ran."""
        with self._changed:
            self._changed.wait_for(lambda: self._serving.get(path, 0) == ticket)
            reader = self._readers.pop(path, None)
        lent = {} if reader is None else {path: reader}
        try:
            yield lent
        finally:
            with self._changed:
                if path in lent:
                    self._readers[path] = lent[path]
                    while len(self._readers) > self._keep:
                        self._readers.popitem(last=False)[1].close()
                self._serving[path] = ticket + 1
                self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()


def _decode(
    record: SequenceRecord,
    start: int,
    stop: int,
    settings: CropSettings,
    turns: VideoTurns,
    video: str | None,
    ticket: int,
) -> np.ndarray:
    """One decode task: `sequence_crops`, with the shared reader of its one video if any."""
    if video is None:
        return sequence_crops(record, start, stop, settings)
    with turns.turn(video, ticket) as videos:
        return sequence_crops(record, start, stop, settings, videos)


@dataclass
class _Sequence:
    record: SequenceRecord
    features: np.ndarray
    remaining: int
    failed: bool = False


Parts = list[tuple[_Sequence, int, int]]
"""Which (sequence, first frame, count) each run of rows in a batch belongs to."""
SequenceSink = Callable[[SequenceRecord, np.ndarray], None]

CPU_BATCH_SIZE, CUDA_BATCH_SIZE = 32, 256
CPU_DECODE_THREADS = 2
"""On CPU the backbone's own threads need the cores; on CUDA every core decodes and crops."""


def extraction_device(device: str) -> str:
    """`device` with `auto` resolved on this machine (CUDA when torch sees one).

    Resolved where extraction runs, never where it is requested: a flow process without a
    GPU hands `auto` to the GPU worker of a Dask cluster, which must run it on its GPU.
    """
    return get_settings(device=device).torch_device() if device == "auto" else device


def extraction_defaults(device: str) -> tuple[int, int]:
    """(crops per backbone batch, decode threads) for `device` on this machine: a GPU needs
    big batches and every core feeding it."""
    if torch.device(extraction_device(device)).type == "cuda":
        return CUDA_BATCH_SIZE, os.cpu_count() or 1
    return CPU_BATCH_SIZE, CPU_DECODE_THREADS


def run_extraction(
    records: Iterable[SequenceRecord],
    backbone: torch.nn.Module,
    sink: SequenceSink,
    is_done: Callable[[SequenceRecord], bool],
    settings: CropSettings,
    device: str = "cpu",
    batch_size: int | None = None,
    num_decode_threads: int | None = None,
    autocast: bool = True,
    progress: bool = True,
) -> ExtractionSummary:
    """Extract features for every record not `is_done`, handing each finished one to `sink`.

    Records whose frames fail to decode are quarantined (file and frame named) and the rest
    carries on; a TFRecord changed since it was parsed stops the run (SourceChangedError).
    On CPU the result is deterministic and does not depend on the batching (frames go
    through the backbone one at a time); features are float16 when sunk. `device` may be
    `auto`; batch size and decode threads default to `extraction_defaults(device)`.
    """
    device = extraction_device(device)
    default_batch, default_threads = extraction_defaults(device)
    batch_size = batch_size or default_batch
    num_decode_threads = num_decode_threads or default_threads
    torch_device = torch.device(device)
    runner: BackboneRunner[Parts] = BackboneRunner(backbone, torch_device, autocast)
    summary = ExtractionSummary(device=str(torch_device), precision=runner.precision)
    quarantine = Quarantine()
    stages = dict.fromkeys(("decode wait", "backbone", "write"), 0.0)
    started = time.perf_counter()
    threads_before = cv2.getNumThreads()
    cv2.setNumThreads(1)  # the decode threads are the parallelism; avoid oversubscription
    bar = tqdm(unit="frame", unit_scale=True, disable=not progress, desc="features")
    turns = VideoTurns(keep=max(1, num_decode_threads) + 1)

    def settle(result: tuple[np.ndarray, Parts] | None) -> None:
        if result is None:
            return
        features, parts = result
        offset = 0
        for state, start, count in parts:
            state.features[start : start + count] = features[offset : offset + count]
            offset += count
            state.remaining -= count
            if state.remaining == 0 and not state.failed:
                tick = time.perf_counter()
                sink(state.record, state.features.astype(np.float16))
                stages["write"] += time.perf_counter() - tick
                summary.sequences += 1
                summary.frames += len(state.record)
            bar.update(count)

    def launch(crops: list[np.ndarray], parts: Parts) -> None:
        tick = time.perf_counter()
        result = runner.submit(np.concatenate(crops), parts)
        stages["backbone"] += time.perf_counter() - tick
        settle(result)

    def jobs() -> Iterator[tuple[_Sequence, int, int, str | None]]:
        for record in records:
            if is_done(record):
                summary.reused_sequences += 1
                continue
            try:
                record.check()
            except ValueError as error:
                source = record.images[0].path if len(record) else ""
                quarantine.add(record.key, source, "record", str(error))
                continue
            if len(record) == 0:
                quarantine.add(record.key, "", "images", "sequence has no frames")
                continue
            state = _Sequence(record, np.zeros((len(record), FEATURE_DIM), np.float32), len(record))
            video = video_of(record)
            for start, stop in _chunks(record, video):
                yield state, start, stop, video

    try:
        with ThreadPoolExecutor(max(1, num_decode_threads)) as pool:
            in_flight: deque[tuple[_Sequence, int, int, Future[np.ndarray]]] = deque()
            in_flight_frames = 0
            # Bounded look-ahead in frames: keeps every thread busy and one batch ready
            # without holding whole datasets of crops in memory.
            budget = 2 * batch_size + 2 * num_decode_threads * CHUNK_FRAMES
            pending_crops: list[np.ndarray] = []
            pending_parts: Parts = []
            pending_count = 0
            source = jobs()
            exhausted = False
            while True:
                while not exhausted and (not in_flight or in_flight_frames < budget):
                    job = next(source, None)
                    if job is None:
                        exhausted = True
                        break
                    state, start, stop, video = job
                    ticket = turns.ticket(video) if video is not None else 0
                    future = pool.submit(
                        _decode, state.record, start, stop, settings, turns, video, ticket
                    )
                    in_flight.append((state, start, stop, future))
                    in_flight_frames += stop - start
                if not in_flight:
                    break
                state, start, stop, future = in_flight.popleft()
                in_flight_frames -= stop - start
                tick = time.perf_counter()
                try:
                    crops = future.result()
                except FrameError as error:
                    stages["decode wait"] += time.perf_counter() - tick
                    if not state.failed:
                        state.failed = True
                        quarantine.add(
                            state.record.key, error.path, f"frame {error.frame}", str(error)
                        )
                    state.remaining -= stop - start
                    continue
                stages["decode wait"] += time.perf_counter() - tick
                if state.failed:
                    state.remaining -= stop - start
                    continue
                offset = 0
                while offset < len(crops):
                    take = min(len(crops) - offset, batch_size - pending_count)
                    pending_crops.append(crops[offset : offset + take])
                    pending_parts.append((state, start + offset, take))
                    pending_count += take
                    offset += take
                    if pending_count == batch_size:
                        launch(pending_crops, pending_parts)
                        pending_crops, pending_parts, pending_count = [], [], 0
            if pending_crops:
                launch(pending_crops, pending_parts)
            tick = time.perf_counter()
            last = runner.flush()
            stages["backbone"] += time.perf_counter() - tick
            settle(last)  # after the backbone's tick: settle times its writes itself
    finally:
        turns.close()
        cv2.setNumThreads(threads_before)
        bar.close()
    summary.skipped = quarantine.skips
    stages["total"] = time.perf_counter() - started
    summary.stage_seconds = stages
    if runner.check is not None:
        summary.autocast_max_abs_diff, summary.autocast_mean_abs_diff = runner.check
    return summary


def _add_record(
    writer: StoreWriter | SegmentWriter, record: SequenceRecord, features: np.ndarray
) -> None:
    """Queue one extracted sequence, with its features, in a store or segment writer."""
    writer.add(
        record.name,
        record.person_id,
        record.fps,
        record.content_hash,
        {
            "features": features,
            "joints2d": record.joints2d,
            "joints3d": record.joints3d,
            "pose": record.pose,
            "shape": record.shape,
            "bbox": record.bbox,
            "frame_index": record.frame_index,
            "valid": record.valid,
            "has_smpl": record.has_smpl,
        },
    )


def _code_version() -> str:
    try:
        return importlib.metadata.version("tcmr-pipeline")
    except importlib.metadata.PackageNotFoundError:
        return ""


def extract_to_store(
    records: Iterable[SequenceRecord],
    root: str,
    group: str,
    checkpoint: Path,
    *,
    device: str = "cpu",
    crop_scale: float | None = None,
    occluders: OccluderBank | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    num_decode_threads: int | None = None,
    autocast: bool = True,
    commit_every_frames: int = SHARD_ROWS,
    source_manifest_digest: str = "",
    progress: bool = True,
) -> ExtractionSummary:
    """Extract SPIN ResNet-50 features of `records` into the store group `root/group`.

    Resumable: finished sequences are committed every `commit_every_frames` frames (a shard
    by default), and a re-run skips every sequence the store already holds with the same
    content hash. A store built with another provenance (checkpoint, crop scale, occluders,
    seed, ...) is rebuilt from scratch, never appended to.
    """
    records = iter(records)
    first = next(records, None)
    if first is None:
        return ExtractionSummary(device=device, precision="none")
    scale = crop_scale if crop_scale is not None else first.crop_scale
    provenance = Provenance(
        backbone_sha256=file_sha256(checkpoint),
        crop_scale=float(scale),
        occlusion_bank_hash=occluders.content_hash if occluders is not None else "",
        occlusion_seed=seed if occluders is not None else None,
        code_version=_code_version(),
        source_manifest_digest=source_manifest_digest,
    )
    loc = location(root)
    stored = reusable_provenance(read_pointer(loc, group, any_version=True), f"{loc.root}/{group}")
    reusable = stored is not None and not stored.differences(provenance)
    done = content_hashes(loc, group) if reusable else {}
    mode = "append" if reusable else "overwrite"
    writer = StoreWriter(loc, group, provenance, mode=mode)
    uncommitted = 0

    def is_done(record: SequenceRecord) -> bool:
        if crop_scale is None and record.crop_scale != scale:
            raise TcmrError(
                f"{record.key}: crop scale {record.crop_scale} differs from {scale} of the other "
                f"sequences in store group {group}; pass one crop scale for the whole group"
            )
        return done.get((record.name, record.person_id)) == record.content_hash

    def sink(record: SequenceRecord, features: np.ndarray) -> None:
        nonlocal uncommitted
        _add_record(writer, record, features)
        uncommitted += len(record)
        if uncommitted >= commit_every_frames:
            writer.commit()
            uncommitted = 0

    backbone = load_spin_backbone(checkpoint, device="cpu")
    summary = run_extraction(
        itertools.chain([first], records),
        backbone,
        sink,
        is_done,
        CropSettings(crop_scale, occluders, seed),
        device=device,
        batch_size=batch_size,
        num_decode_threads=num_decode_threads,
        autocast=autocast,
        progress=progress,
    )
    if uncommitted or not reusable:
        tick = time.perf_counter()
        writer.commit()
        seconds = time.perf_counter() - tick
        summary.stage_seconds["write"] += seconds
        summary.stage_seconds["total"] += seconds  # the rate counts frames in a committed store
    return summary


def extract_to_segment(
    records: Iterable[SequenceRecord],
    writer: SegmentWriter,
    checkpoint: Path,
    settings: CropSettings,
    *,
    device: str = "cpu",
    batch_size: int | None = None,
    num_decode_threads: int | None = None,
    autocast: bool = True,
    progress: bool = False,
) -> ExtractionSummary:
    """Extract features of every record into one shard's `writer` (the caller commits it).

    One writer per shard: parallel shards each own a segment, and a single commit adopts
    them all, so concurrent extraction never writes into the same Zarr shard.
    """
    return run_extraction(
        records,
        load_spin_backbone(checkpoint, device="cpu"),
        functools.partial(_add_record, writer),
        lambda record: False,
        settings,
        device=device,
        batch_size=batch_size,
        num_decode_threads=num_decode_threads,
        autocast=autocast,
        progress=progress,
    )
