"""Feature extraction throughput, three ways on the same frames and device, in one run.

1. backbone only: the ResNet-50 on ready normalised tensors already on the device (the
   device limit; channels_last + autocast on CUDA as the engine uses them);
2. ours end to end: `extract_to_store` from JPEG files to float16 features in a store;
3. the official way: per sequence, read and crop every frame in one process, stack the
   whole sequence on the device, fp32 batches of 200.

Frames are synthetic 960x540 JPEGs (distinct files, replicated to the requested count by
reuse across sequences) with a square bbox per frame. Synthetic base data is written to a
temporary folder first. Results go to `bench/results/features-<device>.txt`; the load
average is printed because a shared CPU makes absolute figures meaningless (ratios hold).

Run: `.venv/bin/python bench/features.py [--frames N] [--device cpu|cuda] [--batch-size B]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from bench._common import add_results_argument, describe_machine, synchronize, write_result
from model.backbone import load_spin_backbone
from pipeline.crop import crop_image, decode_image_file, normalize
from pipeline.datasets.records import ImageRef, SequenceRecord
from pipeline.features import BackboneRunner, extract_to_store
from pipeline.sample.base_data import write_base_data
from storage.reader import open_store

UNIQUE_FRAMES = 48
SEQUENCE_LENGTH = 48
WIDTH, HEIGHT = 960, 540


def _write_frames(folder: Path) -> list[Path]:
    """Textured frames with a bright blob, so JPEG decode cost is realistic."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(UNIQUE_FRAMES):
        small = rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
        image = cv2.resize(small, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
        cv2.circle(image, (300 + 5 * i, 270), 120, (230, 200, 180), -1)
        path = folder / f"frame_{i:05d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def _records(frames: list[Path], total: int) -> list[SequenceRecord]:
    records = []
    for start in range(0, total, SEQUENCE_LENGTH):
        t = min(SEQUENCE_LENGTH, total - start)
        refs = [ImageRef(str(frames[(start + i) % len(frames)])) for i in range(t)]
        bbox = np.array([[300 + 5 * i, 270, 260, 260] for i in range(t)], dtype=np.float32)
        records.append(
            SequenceRecord(
                dataset="bench",
                split="train",
                name=f"seq{start // SEQUENCE_LENGTH:05d}",
                person_id=0,
                fps=30.0,
                images=refs,
                frame_index=np.arange(t),
                joints2d=np.zeros((t, 49, 3), np.float32),
                joints3d=np.zeros((t, 49, 4), np.float32),
                pose=np.zeros((t, 72), np.float32),
                shape=np.zeros((t, 10), np.float32),
                has_smpl=np.zeros(t, bool),
                bbox=bbox,
                valid=np.ones(t, bool),
                content_hash=f"bench-{start}",
                crop_scale=1.2,
            )
        )
    return records


def backbone_only(checkpoint: Path, device: torch.device, batch: int, batches: int) -> float:
    """Frames/s of the backbone on normalised tensors already on the device."""
    runner = BackboneRunner(load_spin_backbone(checkpoint), device, autocast=True)
    inputs = torch.randn(batch, 3, 224, 224, device=device)
    if device.type == "cuda":
        inputs = inputs.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def step() -> None:
        if runner.dtype is None:
            runner.backbone(inputs)
        else:
            with torch.autocast("cuda", dtype=runner.dtype):
                runner.backbone(inputs)

    step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(batches):
        step()
    synchronize(device)
    return batch * batches / (time.perf_counter() - start)


def official_way(
    records: list[SequenceRecord], checkpoint: Path, device: torch.device
) -> tuple[float, np.ndarray]:
    """Frames/s of the released recipe: whole sequence cropped and stacked, fp32, batch 200."""
    model = load_spin_backbone(checkpoint).to(device).eval()
    outputs = []
    start = time.perf_counter()
    with torch.no_grad():
        for record in records:
            crops = [
                normalize(crop_image(decode_image_file(ref.path), record.bbox[t], 1.2)[None])[0]
                for t, ref in enumerate(record.images)
            ]
            video = torch.from_numpy(np.stack(crops)).to(device)
            for lo in range(0, len(video), 200):
                outputs.append(model(video[lo : lo + 200]).cpu().numpy())
    synchronize(device)
    frames = sum(len(r) for r in records)
    return frames / (time.perf_counter() - start), np.concatenate(outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=192)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    add_results_argument(parser)
    args = parser.parse_args()
    device = torch.device(args.device)
    batch = args.batch_size or (512 if device.type == "cuda" else 32)
    machine = describe_machine(str(device))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = write_base_data(folder / "base_data")["spin_model_checkpoint.pth.tar"]
        (folder / "frames").mkdir()
        records = _records(_write_frames(folder / "frames"), args.frames)
        limit = backbone_only(checkpoint, device, batch, max(2, args.frames // batch // 2))
        summary = extract_to_store(
            records, str(folder / "store"), "bench/train/base", checkpoint,
            device=str(device), batch_size=batch, num_decode_threads=args.threads,
            progress=False,
        )  # fmt: skip
        ours = summary.frames_per_second
        official, official_features = official_way(records, checkpoint, device)
        store = open_store(str(folder / "store"), "bench/train/base")
        stored = store.read("features", 0, len(store)).astype(np.float32)
        diff = np.abs(stored - official_features)

    lines = [
        machine,
        f"{args.threads} decode threads",
        f"frames: {args.frames} ({WIDTH}x{HEIGHT} JPEG, sequences of {SEQUENCE_LENGTH}); "
        f"batch {batch}; precision {summary.precision}",
        f"backbone only (ready tensors): {limit:10.1f} frames/s",
        f"ours end to end (decode->store): {ours:10.1f} frames/s  "
        f"= {ours / limit:.2f}x backbone only, {ours / official:.2f}x official",
        f"official way (fp32, batch 200): {official:10.1f} frames/s",
        f"stored fp16 vs official fp32 features: max |diff| {diff.max():.4g}, "
        f"mean |diff| {diff.mean():.4g}",
        summary.render(),
    ]
    write_result(args.results, f"features-{device.type}.txt", "\n".join(lines))


if __name__ == "__main__":
    main()
