"""Throughput of one TCMR training step and one evaluation forward, in windows per second.

Training step = the recipe's batch (32 windows of 16 frames), three supervised outputs per
window, SMPL forward, TCMR loss, backward and an Adam step. Evaluation = one forward of 32
windows for the mid frame. Median of a few timed repeats after warm-up, on CPU and on
CUDA when present. Synthetic base data is written to a temporary folder first.

Run: `.venv/bin/python bench/model_step.py [--repeats N] [--batch B]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench._common import add_results_argument, describe_machine, synchronize, write_result
from model.config import ModelConfig, target_frames
from model.losses import TCMRLoss
from model.tcmr import build_model
from pipeline.sample.base_data import write_base_data
from storage.settings import Settings


def _median_seconds(
    step: Callable[[], None], device: torch.device, warmup: int, repeats: int
) -> float:
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _batch(n: int, k: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Targets shaped like a store batch: 2D with confidence, 3D, SMPL theta, row masks."""
    generator = torch.Generator().manual_seed(0)
    kp_2d = torch.rand(n, k, 49, 3, generator=generator) * 2 - 1
    kp_2d[..., 2] = 1.0
    theta = 0.1 * torch.randn(n, k, 85, generator=generator)
    w_3d = torch.zeros(n, k, dtype=torch.bool)
    w_3d[int(n * 0.6) :] = True  # the recipe: 19 2D-only windows, then 13 with 3D and SMPL
    return {
        "kp_2d": kp_2d.to(device),
        "kp_3d": (0.3 * torch.randn(n, k, 49, 3, generator=generator)).to(device),
        "theta": theta.to(device),
        "w_3d": w_3d.to(device),
        "w_smpl": w_3d.clone().to(device),
    }


def bench_device(
    settings: Settings, device: torch.device, batch: int, repeats: int
) -> dict[str, float]:
    """Windows per second of a training step and of an evaluation forward on one device."""
    config = ModelConfig()
    torch.manual_seed(0)
    model = build_model(config, settings)
    smpl = model.smpl.to(device)
    model = model.to(device).set_smpl(smpl)
    features = torch.randn(batch, config.seqlen, config.feature_dim, device=device)
    targets = _batch(batch, len(target_frames(config)), device)
    criterion = TCMRLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-5)

    def train_step() -> None:
        model.train()
        pred, _ = model(features, is_train=True)
        loss = criterion(pred, targets)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def eval_step() -> None:
        model.eval()
        model(features, is_train=False)

    train = _median_seconds(train_step, device, warmup=2, repeats=repeats)
    evaluate = _median_seconds(eval_step, device, warmup=2, repeats=repeats)
    return {"train": batch / train, "eval": batch / evaluate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    add_results_argument(parser)
    args = parser.parse_args()
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    machine = describe_machine("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        write_base_data(Path(tmp))
        settings = Settings(base_data=Path(tmp))
        rows = [
            (device, bench_device(settings, device, args.batch, args.repeats)) for device in devices
        ]

    lines = [
        f"TCMR model step, batch {args.batch} windows x 16 frames, median of {args.repeats} after 2 warm-up",
        machine,
        # Other processes on the machine slow the CPU figures; the load says how busy it was.
        f"1-min load average after: {os.getloadavg()[0]:.1f}",
    ]
    lines.append(f"{'device':<8} {'train windows/s':>16} {'eval windows/s':>16}")
    for device, result in rows:
        lines.append(f"{device.type:<8} {result['train']:>16.1f} {result['eval']:>16.1f}")
    write_result(args.results, "model_step.txt", "\n".join(lines))


if __name__ == "__main__":
    main()
