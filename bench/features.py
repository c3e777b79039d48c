"""Feature extraction throughput, three ways on the same frames and device, in one run.

1. backbone only: the ResNet-50 on ready normalised tensors already on the device (the
   device limit; channels_last + autocast on CUDA as the engine uses them; on CPU the
   faster of whole batches and one frame per call);
2. ours end to end: `extract_to_store` from the source files to float16 features in a
   committed store (a second line adds the one-off checkpoint hash and load; on CPU the
   engine runs one frame per call, which keeps features independent of the batching);
3. the official way: per sequence, read and crop every frame in one process, stack the
   whole sequence on the device, fp32 batches of 200;
and decoding + cropping alone on the decode threads: the host's ceiling (on a GPU it must
stay above the backbone's rate for the device to stay busy).

Frames are the bundled sample (written as `tcmr sample-data` does), read by the build's own
readers from every dataset's train split, so every decode path runs: image files (3DPW,
Human3.6M, Penn Action, PoseTrack, MPI-INF-3DHP), video frames (MPI-INF-3DHP) and the
InstaVariety TFRecord crops. The records are repeated, each copy a new sequence (own name
and content hash), to `--frames` frames: 3072 on a GPU, 256 on CPU, where a run takes a
few minutes on 2 shared cores. The sample's frames are small (160 to 320 pixels wide), so
decoding costs less than on real footage. A store group holds one crop scale and the sample's
datasets differ (1.0 to 1.3), so both ways crop at 1.2; the scale does not change the cost.
Results go to `bench/results/features-<device>.txt`; the load average is printed because a
shared CPU makes absolute figures meaningless (ratios hold).

Run: `.venv/bin/python bench/features.py [--frames N] [--device cpu|cuda] [--batch-size B]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from bench._common import add_results_argument, describe_machine, synchronize, write_result
from model.backbone import load_spin_backbone
from pipeline.build import CHECKPOINT_NAME, READERS, BuildRequest, read_records
from pipeline.crop import normalize
from pipeline.datasets.records import Quarantine, SequenceRecord
from pipeline.features import CropSettings, extract_to_store, sequence_crops
from pipeline.runner import BackboneRunner
from pipeline.sample import write_sample
from storage.reader import Store, open_store

CROP_SCALE = 1.2
OFFICIAL_BATCH = 200
PER_FRAME = ("frame_index", "joints2d", "joints3d", "pose", "shape", "has_smpl", "bbox", "valid")


def sample_records(folder: Path) -> tuple[list[SequenceRecord], Path]:
    """Write the sample under `folder`; its train records and the checkpoint.

    Datasets alternate (each one's first sequence, then each one's second, ...), so even a
    short run decodes every kind of source.
    """
    write_sample(folder)
    base = folder / "base_data"
    per_dataset = []
    for dataset, (_, _, release) in READERS.items():
        request = BuildRequest(
            dataset=dataset,
            split="train",
            root=folder / release,
            store=str(folder / "store"),
            checkpoint=base / CHECKPOINT_NAME,
            base_data=base,
        )
        per_dataset.append([r for r in read_records(request, Quarantine()) if len(r)])
    records = [r for turn in itertools.zip_longest(*per_dataset) for r in turn if r is not None]
    return records, base / CHECKPOINT_NAME


def _copy(record: SequenceRecord, copy: int, frames: int) -> SequenceRecord:
    """Copy number `copy` of a record, cut to its first `frames` frames: a new sequence."""
    digest = hashlib.sha256(f"{record.content_hash}/{copy}/{frames}".encode()).hexdigest()
    return dataclasses.replace(
        record,
        name=f"{record.name}_copy{copy:04d}",
        content_hash=digest,
        images=record.images[:frames],
        **{name: getattr(record, name)[:frames] for name in PER_FRAME},
    )


def replicate(records: list[SequenceRecord], frames: int) -> list[SequenceRecord]:
    """Copies of `records` in turn until they hold `frames` frames (the last one cut to fit)."""
    if not any(len(record) for record in records):
        raise ValueError("no frames to replicate: the sample's readers returned none")
    copies = ((copy, r) for copy in itertools.count() for r in records if len(r))
    out: list[SequenceRecord] = []
    total = 0
    while total < frames:
        copy, record = next(copies)
        take = min(len(record), frames - total)
        out.append(_copy(record, copy, take))
        total += take
    return out


def backbone_only(checkpoint: Path, device: torch.device, batch: int, batches: int) -> float:
    """Frames/s of the backbone on normalised tensors already on the device: the device limit.

    On CPU the faster of whole batches and one frame per call (the engine's way, which on
    some CPUs is the faster one), so the engine is never compared with a slower mode.
    """
    runner: BackboneRunner[None] = BackboneRunner(
        load_spin_backbone(checkpoint), device, autocast=True
    )
    inputs = torch.randn(batch, 3, 224, 224, device=device)
    if device.type == "cuda":
        inputs = inputs.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def whole_batch() -> None:
        if runner.dtype is None:
            runner.backbone(inputs)
        else:
            with torch.autocast("cuda", dtype=runner.dtype):
                runner.backbone(inputs)

    @torch.inference_mode()
    def frame_by_frame() -> None:
        for frame in inputs.split(1):
            runner.backbone(frame)

    def rate(step: Callable[[], None]) -> float:
        step()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(batches):
            step()
        synchronize(device)
        return batch * batches / (time.perf_counter() - start)

    if device.type == "cuda":
        return rate(whole_batch)
    return max(rate(whole_batch), rate(frame_by_frame))


def official_way(
    records: list[SequenceRecord], checkpoint: Path, device: torch.device
) -> tuple[float, dict[tuple[str, int], np.ndarray]]:
    """Frames/s of the released recipe (whole sequence cropped and stacked, fp32, batch 200)
    and each sequence's features by (name, person id)."""
    model = load_spin_backbone(checkpoint).to(device).eval()
    settings = CropSettings(scale=CROP_SCALE)
    features = {}
    start = time.perf_counter()
    with torch.no_grad():
        for record in records:
            crops = sequence_crops(record, 0, len(record), settings)
            video = torch.from_numpy(normalize(crops)).to(device)
            batches = [
                model(video[lo : lo + OFFICIAL_BATCH]).cpu().numpy()
                for lo in range(0, len(video), OFFICIAL_BATCH)
            ]
            features[(record.name, record.person_id)] = np.concatenate(batches)
    synchronize(device)
    frames = sum(len(r) for r in records)
    return frames / (time.perf_counter() - start), features


def decode_only(records: list[SequenceRecord], threads: int) -> float:
    """Frames/s of decoding and cropping alone on `threads` threads: the host's ceiling,
    which on a GPU must stay above the backbone's rate for the device to stay busy."""
    settings = CropSettings(scale=CROP_SCALE)
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)  # as the engine: the threads are the parallelism
    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            crops = pool.map(lambda r: len(sequence_crops(r, 0, len(r), settings)), records)
            frames = sum(crops)
        return frames / (time.perf_counter() - start)
    finally:
        cv2.setNumThreads(before)


def stored_vs_official(store: Store, official: dict[tuple[str, int], np.ndarray]) -> np.ndarray:
    """|stored - official| of every feature, sequence by sequence (matched by name)."""
    diffs = []
    for row in store.sequences:
        stored = store.read("features", row.first_row, row.first_row + row.length)
        diffs.append(np.abs(stored.astype(np.float32) - official[row.key]))
    return np.concatenate(diffs)


def _rate(label: str, frames_per_second: float) -> str:
    return f"{label + ':':<44}{frames_per_second:10.1f} frames/s"


def _composition(records: list[SequenceRecord]) -> str:
    datasets = Counter[str]()
    kinds = Counter[str]()
    for record in records:
        datasets[record.dataset] += len(record)
        kinds.update(ref.kind for ref in record.images)
    by_dataset = ", ".join(f"{name} {count}" for name, count in datasets.items())
    by_kind = ", ".join(f"{name} {count}" for name, count in kinds.items())
    return f"by dataset: {by_dataset}; by source: {by_kind}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=None, help="default 3072 GPU, 256 CPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    add_results_argument(parser)
    args = parser.parse_args()
    if args.frames is not None and args.frames < 1:
        parser.error("--frames must be at least 1")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    frames = args.frames or (3072 if cuda else 256)
    batch = args.batch_size or (512 if cuda else 32)
    machine = describe_machine(str(device))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sample, checkpoint = sample_records(folder / "sample")
        records = replicate(sample, frames)
        limit = backbone_only(checkpoint, device, batch, max(2, -(-frames // batch)))
        start = time.perf_counter()
        summary = extract_to_store(
            records, str(folder / "store"), "bench/train/base", checkpoint,
            device=str(device), crop_scale=CROP_SCALE, batch_size=batch,
            num_decode_threads=args.threads, progress=False,
        )  # fmt: skip
        whole = frames / (time.perf_counter() - start)
        ours = summary.frames_per_second
        official, official_features = official_way(records, checkpoint, device)
        host = decode_only(records, args.threads)
        store = open_store(str(folder / "store"), "bench/train/base")
        diff = stored_vs_official(store, official_features)

    lines = [
        machine,
        f"{args.threads} decode threads",
        f"frames: {frames} in {len(records)} sequences, the sample's {len(sample)} train "
        f"sequences ({sum(len(r) for r in sample)} frames) repeated; crop scale {CROP_SCALE}; "
        f"batch {batch}; precision {summary.precision}",
        _composition(records),
        _rate("backbone only (ready tensors)", limit),
        _rate("ours end to end (decode->store)", ours)
        + f"  = {ours / limit:.2f}x backbone only, {ours / official:.2f}x official",
        _rate("ours, whole call (+ checkpoint hash, load)", whole)
        + f"  = {whole / limit:.2f}x backbone only, {whole / official:.2f}x official",
        _rate(f"official way (fp32, batch {OFFICIAL_BATCH})", official),
        _rate(f"decode + crop alone ({args.threads} threads)", host)
        + f"  = {host / limit:.2f}x backbone only",
        f"stored fp16 vs official fp32 features: "
        f"max |diff| {diff.max():.4g}, mean |diff| {diff.mean():.4g}",
        summary.render(),
    ]
    write_result(args.results, f"features-{device.type}.txt", "\n".join(lines))


if __name__ == "__main__":
    main()
