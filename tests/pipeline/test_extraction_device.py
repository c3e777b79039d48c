"""Where the extraction device and its defaults are decided: on the machine that extracts."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from model.backbone import load_spin_backbone
from pipeline.datasets.records import ImageRef, SequenceRecord
from pipeline.features import CropSettings, extraction_defaults, run_extraction

THIS_MACHINE = "cuda" if torch.cuda.is_available() else "cpu"


def png_record(folder: Path, frames: int) -> SequenceRecord:
    """`frames` random 64x48 PNG frames with a centred square box."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    refs = []
    for i in range(frames):
        path = folder / f"frame_{i:03d}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
        refs.append(ImageRef(str(path)))
    return SequenceRecord(
        dataset="sample", split="train", name="seq", person_id=0, fps=30.0, images=refs,
        frame_index=np.arange(frames, dtype=np.int64),
        joints2d=np.zeros((frames, 49, 3), np.float32),
        joints3d=np.zeros((frames, 49, 4), np.float32),
        pose=np.zeros((frames, 72), np.float32), shape=np.zeros((frames, 10), np.float32),
        has_smpl=np.zeros(frames, bool), bbox=np.tile([32.0, 24.0, 30.0, 30.0], (frames, 1)),
        valid=np.ones(frames, bool), content_hash="hash-seq", crop_scale=1.2,
    )  # fmt: skip


def test_defaults_follow_the_device_kind_and_this_machines_cores() -> None:
    assert extraction_defaults("cpu") == (32, 2)
    assert extraction_defaults("cuda:1") == (256, os.cpu_count())
    assert extraction_defaults("auto") == extraction_defaults(THIS_MACHINE)


def test_auto_runs_on_the_extracting_machines_device(tmp_path: Path, checkpoint: Path) -> None:
    record = png_record(tmp_path / "frames", 2)
    sunk: dict[str, np.ndarray] = {}

    def run(device: str) -> str:
        summary = run_extraction(
            [record],
            load_spin_backbone(checkpoint),
            lambda rec, features: sunk.__setitem__(device, features),
            lambda rec: False,
            CropSettings(),
            device=device,
            progress=False,
        )
        assert (summary.frames, summary.skipped) == (2, [])
        return summary.device

    assert run("auto") == THIS_MACHINE
    assert run(THIS_MACHINE) == THIS_MACHINE
    assert sunk["auto"].shape == (2, 2048)
    np.testing.assert_array_equal(sunk["auto"], sunk[THIS_MACHINE])
