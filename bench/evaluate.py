"""Evaluation throughput with our batching vs the official batch of 8, and training speed.

Both evaluation runs go through the same code (`model.evaluate.predict_frames`: store
reads, the model, SMPL, the 14 evaluation joints and the 3DPW mesh error) on the same
device and store; only the batch size differs. The store reads alone (each batch's distinct
frames and the evaluated frames' labels, block cache warm) are timed too: on a GPU they
bound what any batch size can reach. Training iterations per second come from
`model.train.train` with the recipe's 19 + 13 batch, read back from its metrics log.
The model is the released architecture (GRU 1024) unless `--hidden` says otherwise.

Run: `.venv/bin/python bench/evaluate.py [--frames N] [--batch 256] [--steps 3]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bench._common import add_results_argument, describe_machine, write_result
from model.config import ModelConfig
from model.data import EvalBatches, EvalDataset
from model.evaluate import JOINT_RULES, predict_frames
from model.tcmr import build_model
from model.train import DatasetSpec, TrainConfig, ValidationSpec, train
from pipeline.sample.base_data import write_base_data
from pipeline.sample.store import write_sample_store
from storage.reader import open_store
from storage.settings import Settings


def windows_per_second(model, data, batch: int, device: str, repeats: int) -> float:
    predict_frames(model, data, JOINT_RULES["3dpw"], batch, device)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        predict_frames(model, data, JOINT_RULES["3dpw"], batch, device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return len(data) / best


def reads_per_second(data: EvalDataset, batch: int) -> float:
    """Windows/s of the store reads alone, block cache warm: the host's ceiling for a device."""
    batches = EvalBatches(data, batch)
    for index in range(len(batches)):
        batches[index]
    started = time.perf_counter()
    for index in range(len(batches)):
        batches[index]
    return len(data) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400, help="evaluation frames (windows)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="training steps timed")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_results_argument(parser)
    args = parser.parse_args()
    device = args.device
    config = ModelConfig(hidden_size=args.hidden)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_base_data(root / "base", seed=0)
        settings = Settings(base_data=root / "base", store=str(root / "stores"), device=device)
        per_seq = max(16, args.frames // 4)
        write_sample_store(root / "stores", "3dpw/test/base", [per_seq] * 4, seed=1)
        write_sample_store(
            root / "stores", "insta/train/base", [64] * 4, seed=2, with_3d=False, with_smpl=False
        )
        write_sample_store(root / "stores", "3dpw/train/base", [64] * 4, seed=3)

        torch.manual_seed(0)
        model = build_model(config, settings).to(device).eval()
        model.set_smpl(model.smpl.to(device))
        data = EvalDataset(open_store(str(root / "stores"), "3dpw/test/base"))
        official = windows_per_second(model, data, 8, device, args.repeats)
        ours = windows_per_second(model, data, args.batch, device, args.repeats)
        reads = {batch: reads_per_second(data, batch) for batch in (8, args.batch)}

        train_config = TrainConfig(
            store=str(root / "stores"),
            epochs=1,
            iterations_per_epoch=args.steps,
            stride=1,
            num_workers=2,
            model=config.to_dict(),
            datasets_2d=[DatasetSpec(group="insta/train/base", use_smpl=False, use_3d=False)],
            datasets_3d=[DatasetSpec(group="3dpw/train/base")],
            validation=ValidationSpec(group="3dpw/test/base", dataset="3dpw", max_windows=8),
        )
        train(train_config, root / "run", settings, device=device, progress=False)
        rows = [json.loads(line) for line in (root / "run" / "metrics.jsonl").open()]
        it_per_s = next(row["it_per_s"] for row in rows if row["kind"] == "epoch")

    lines = [
        f"# bench/evaluate.py  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"# {describe_machine(device)}",
        f"# model: GRU hidden {args.hidden}; {len(data)} evaluation windows; best of "
        f"{args.repeats} after warm-up",
        f"evaluation, official batch 8      : {official:9.1f} windows/s",
        f"evaluation, batch {args.batch:<5d}          : {ours:9.1f} windows/s",
        f"ratio ours / official             : {ours / official:9.2f}x",
        f"store reads alone, batch 8       : {reads[8]:9.1f} windows/s",
        f"store reads alone, batch {args.batch:<5d}   : {reads[args.batch]:9.1f} windows/s",
        f"training (19 + 13 windows a step): {it_per_s:9.3f} it/s over {args.steps} steps "
        f"({it_per_s * 32:.1f} windows/s)",
    ]
    name = "evaluate-gpu.txt" if device.startswith("cuda") else "evaluate-cpu.txt"
    write_result(args.results, name, "\n".join(lines))


if __name__ == "__main__":
    main()
