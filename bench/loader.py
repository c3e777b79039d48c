"""Training windows per second: from a store vs an in-RAM array vs the official joblib way.

One run measures, side by side on the same synthetic data (an MPI-INF-3DHP-like 3D set:
spin-49 2D joints, 17 valid 3D joints, no SMPL, video-like float16 features):

- store:    training's own loader: `model.data.mixed_loader` over a `WindowDataset` of a
            Zarr store of `--frames` frames (>= 1M), batches from `MixedBatchSampler` (one
            3D dataset, batch 32), `--workers` workers started as training starts them;
- streams:  the same store and loader with `ChunkShuffleSampler(streams=workers)` batches,
            which deal each worker its own chunks (the trainer's sampler does not);
- in-RAM:   the same loader and `WindowDataset` samples, rows gathered from arrays held in
            shared memory (workers from a forkserver share no pages with the main
            process, so that is how an in-RAM set reaches them), in a fully random order
            (the limit);
- official: `joblib.load` of a `*_db.pt` dict (float32 features, float64 joints, as the
            official files) into RAM, then per-window slicing as `Dataset3D` does, with
            forked workers as the official DataLoader starts them on Linux. The full
            1M-frame db would need ~11 GB of RAM next to the others, so it is built at
            `--official-frames` and its RSS is also given per frame (extrapolated).

Each mode runs in its own process so its peak RSS (main + every descendant process: the
forkserver, its workers) is its own. The targets (`storage/README.md`) are taken on the
store row: >= 0.8x the in-RAM throughput, <= 2 GB peak RSS at 1M frames, <= 0.5x the bytes
per frame of the official joblib file.
Output: a table, also saved to `bench/results/loader.txt` with the machine description.
Run: `.venv/bin/python bench/loader.py [--frames 1000000]`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench._common import add_results_argument, describe_machine, write_result

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from storage.reader import Store

SEQ_LEN = 600
BATCH = 32
MODES = ("store", "streams", "in-ram", "official")
MPII3D_3D = [*range(25, 40), 41, 43]


def synthetic_sequence(seed: int, length: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = np.maximum(rng.normal(0.3, 0.6, size=2048), 0).astype(np.float32)
    features = np.maximum(base + rng.normal(0, 0.08, size=(length, 2048)).astype(np.float32), 0)
    joints2d = np.zeros((length, 49, 3), np.float32)
    joints2d[:, MPII3D_3D, :2] = rng.random((length, len(MPII3D_3D), 2)) * 2048
    joints2d[:, MPII3D_3D, 2] = 1.0
    joints3d = np.zeros((length, 49, 4), np.float32)
    joints3d[:, MPII3D_3D, :3] = rng.normal(size=(length, len(MPII3D_3D), 3))
    joints3d[:, MPII3D_3D, 3] = 1.0
    centre = rng.random(2) * 2048
    return {
        "features": features.astype(np.float16),
        "joints2d": joints2d,
        "joints3d": joints3d,
        "pose": np.zeros((length, 72), np.float32),
        "shape": np.zeros((length, 10), np.float32),
        "bbox": np.tile(np.array([*centre, 600.0, 600.0], np.float32), (length, 1)),
        "frame_index": np.arange(length, dtype=np.int64),
        "valid": np.ones(length, dtype=bool),
        "has_smpl": np.zeros(length, dtype=bool),
    }


def lengths(frames: int) -> list[int]:
    return [min(SEQ_LEN, frames - lo) for lo in range(0, frames, SEQ_LEN)]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_store(root: Path, frames: int) -> None:
    from storage.provenance import Provenance
    from storage.writer import StoreWriter

    writer = StoreWriter(
        str(root), "bench/train/base", Provenance(code_version="bench"), "overwrite"
    )
    for i, length in enumerate(lengths(frames)):
        writer.add(f"seq{i:05d}", 0, 25.0, str(i), synthetic_sequence(i, length))
    writer.commit()


def build_official(path: Path, frames: int) -> None:
    """A `mpii3d_train_db.pt`-like joblib dict: float32 features, float64 joints (official)."""
    import joblib

    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("vid_name", "frame_id", "joints2D",
                                                          "joints3D", "bbox", "features")}  # fmt: skip
    for i, length in enumerate(lengths(frames)):
        seq = synthetic_sequence(i, length)
        parts["vid_name"].append(np.array([f"subj1_seq1_vid{i}_seg0"] * length))
        parts["frame_id"].append(np.array([f"frame_{k:06d}" for k in range(length)]))
        parts["joints2D"].append(seq["joints2d"].astype(np.float64))
        parts["joints3D"].append(seq["joints3d"][..., :3].astype(np.float64))
        parts["bbox"].append(seq["bbox"].astype(np.float64))
        parts["features"].append(seq["features"].astype(np.float32))
    joblib.dump({k: np.concatenate(v) for k, v in parts.items()}, path)


class SharedArrays:
    """Stands in for a Store with every array in RAM, so the in-RAM and store runs share
    `WindowDataset`'s sample code and differ only in where rows come from.

    The arrays are files in shared memory (tmpfs) mapped by each process: a worker started
    from a forkserver gets its dataset pickled, and pickling gigabytes of arrays to every
    worker would measure the copy, not the reads.
    """

    def __init__(self, store: Store, folder: Path, names: tuple[str, ...]) -> None:
        self.where, self.sequences = "in-RAM arrays", []
        self.folder, self.names = folder, names
        self._windows = store.windows("train_stride1")
        for name in names:
            first = store.read(name, 0, 1)
            shape = (len(store), *first.shape[1:])
            out = np.lib.format.open_memmap(folder / f"{name}.npy", "w+", first.dtype, shape)
            for lo in range(0, len(store), 1 << 16):
                hi = min(lo + (1 << 16), len(store))
                out[lo:hi] = store.read(name, lo, hi)
            del out
        self._map()

    def _map(self) -> None:
        self.arrays = {
            name: np.load(self.folder / f"{name}.npy", mmap_mode="r").view(np.ndarray)
            for name in self.names
        }

    def __getstate__(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key != "arrays"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._map()

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def windows(self, protocol: str) -> np.ndarray:
        return self._windows

    def spans(self, names: tuple[str, ...], start: int, count: int) -> dict[str, np.ndarray]:
        return {name: self.arrays[name][start : start + count] for name in names}


class OfficialDataset:
    """`Dataset3D.get_single_item` on a whole-RAM joblib db (float16 target assembly)."""

    def __init__(self, db: dict[str, np.ndarray], starts: np.ndarray) -> None:
        self.db, self.starts = db, starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict:
        import torch

        db, s = self.db, int(self.starts[index])
        e = s + 15
        kp_2d = db["joints2D"][s : e + 1].copy()
        bbox = db["bbox"][s : e + 1]
        kp_2d[..., :2] = 2 * (kp_2d[..., :2] - bbox[:, None, :2]) / (bbox[:, None, 2:] * 1.2)
        kp_3d = db["joints3D"][s : e + 1]
        theta = np.zeros((16, 85), np.float16)
        theta[:, 0] = 1
        sample = {
            "features": torch.from_numpy(db["features"][s : e + 1]),
            "theta": torch.from_numpy(np.repeat(theta[8:9], 3, 0)).float(),
            "kp_2d": torch.from_numpy(np.repeat(kp_2d[8:9].astype(np.float16), 3, 0)).float(),
            "kp_3d": torch.from_numpy(np.repeat(kp_3d[8:9].astype(np.float16), 3, 0)).float(),
            "w_smpl": torch.zeros(3),
            "w_3d": torch.ones(3),
        }
        return sample


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of one live process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM")


def peak_rss_mb() -> tuple[float, float, int]:
    """Peak RSS of this process, the sum of those of its live descendants, and their count.

    Forkserver workers are children of the forkserver, not of this process, so
    `RUSAGE_CHILDREN` never sees them (and sees a forked worker only once it has exited):
    each process's own high-water mark is read while the workers are still running.
    """
    import psutil

    others = []
    for child in psutil.Process().children(recursive=True):
        try:
            others.append(vm_hwm_mb(child.pid))
        except FileNotFoundError:  # exited between the listing and the read
            continue
    return vm_hwm_mb(os.getpid()), sum(others), len(others)


def timed_loader(loader: DataLoader, batches: int) -> tuple[float, tuple[float, float, int]]:
    """Windows per second over `batches` batches after 3 of warm-up (worker start-up is not
    throughput), and `peak_rss_mb()` taken before the workers exit."""
    it = iter(loader)
    for _ in range(3):
        next(it)
    tic = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * BATCH / (time.perf_counter() - tic)
    peaks = peak_rss_mb()
    del it
    return rate, peaks


def run_mode(mode: str, workdir: Path, batches: int, workers: int) -> dict:
    from torch.utils.data import BatchSampler, DataLoader

    from model.data import (
        WINDOW_ARRAYS,
        ChunkShuffleSampler,
        MixedBatchSampler,
        WindowDataset,
        mixed_loader,
    )
    from storage.reader import open_store

    store = open_store(str(workdir / "store"), "bench/train/base")
    result: dict = {"mode": mode, "frames": len(store)}
    if mode in ("store", "streams"):
        dataset = WindowDataset(store, "train_stride1")
        if mode == "store":
            sampler = MixedBatchSampler([], [dataset], 0, BATCH, batches=batches + 3, seed=0)
        else:
            streams = ChunkShuffleSampler(dataset.starts, seed=0, streams=max(workers, 1))
            sampler = BatchSampler(streams, BATCH, drop_last=True)
        loader = mixed_loader([], [dataset], sampler, num_workers=workers, seed=0)
        result["windows_per_s"], peaks = timed_loader(loader, batches)
        result["disk_bytes_per_frame"] = du(workdir / "store") / len(store)
    elif mode == "in-ram":
        shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
        with tempfile.TemporaryDirectory(prefix="tcmr-bench-", dir=shm) as folder:
            source = SharedArrays(store, Path(folder), WINDOW_ARRAYS)
            dataset = WindowDataset(source)
            order = np.random.default_rng(0).permutation(len(dataset)).tolist()
            sampler = BatchSampler(order, BATCH, drop_last=True)
            loader = mixed_loader([], [dataset], sampler, num_workers=workers, seed=0)
            result["windows_per_s"], peaks = timed_loader(loader, batches)
            result["ram_bytes_per_frame"] = source.nbytes / len(store)
    else:
        import joblib

        from storage.windows import train_windows

        path = workdir / "official_db.pt"
        tic = time.perf_counter()
        db = joblib.load(path)
        result["load_s"] = time.perf_counter() - tic
        names = db["vid_name"]
        cuts = np.flatnonzero(names[1:] != names[:-1]) + 1
        bounds = np.concatenate([[0], cuts, [len(names)]])
        seqs = [(int(a), int(b - a)) for a, b in itertools.pairwise(bounds)]
        starts = train_windows(seqs, stride=1)
        order = np.random.default_rng(0).permutation(len(starts)).tolist()
        loader = DataLoader(
            OfficialDataset(db, starts),
            batch_sampler=BatchSampler(order, BATCH, drop_last=True),
            num_workers=workers,
            multiprocessing_context="fork" if workers else None,
        )
        result["windows_per_s"], peaks = timed_loader(loader, batches)
        result["frames"] = len(names)
        result["disk_bytes_per_frame"] = path.stat().st_size / len(names)
    main, others, count = peaks
    result["peak_rss_main_mb"], result["peak_rss_others_mb"] = main, others
    result["processes"] = 1 + count
    result["peak_rss_total_mb"] = main + others
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--official-frames", type=int, default=200_000)
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="best of N runs per mode")
    parser.add_argument("--workdir", type=Path, default=Path("data/bench_loader"))
    add_results_argument(parser)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.workdir, args.batches, args.workers)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    lines = [describe_machine(), f"bench/loader.py --frames {args.frames} --official-frames "
             f"{args.official_frames} --batches {args.batches} --workers {args.workers} "
             f"--rounds {args.rounds} (best of rounds; batch {BATCH})"]  # fmt: skip
    tic = time.perf_counter()
    if not (args.workdir / "store" / "bench/train/base" / "zarr.json").exists():
        build_store(args.workdir / "store", args.frames)
        lines.append(f"store built: {args.frames} frames in {time.perf_counter() - tic:.0f} s")
    if not (args.workdir / "official_db.pt").exists():
        build_official(args.workdir / "official_db.pt", args.official_frames)
    results: dict[str, dict] = {}
    for _ in range(args.rounds):  # modes alternate, so a busy spell on a shared host hits all
        for mode in MODES:
            out = subprocess.run(
                [sys.executable, __file__, "--mode", mode, "--workdir", str(args.workdir),
                 "--batches", str(args.batches), "--workers", str(args.workers)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            run = json.loads(out.stdout.strip().splitlines()[-1])
            best = results.get(mode)
            if best is None or run["windows_per_s"] > best["windows_per_s"]:
                results[mode] = run
    ram = results["in-ram"]["windows_per_s"]
    lines += [
        "peak RSS = sum over the mode's processes of each one's own peak (VmHWM, read while "
        "its workers run):",
        "  store, streams, in-RAM: main + forkserver + workers (+ resource tracker), started "
        "as training starts them: workers share no pages with main, the forkserver's "
        "preloaded torch counts in it and in each worker, the in-RAM arrays sit in shared "
        "memory and count in every process that touched them;",
        "  official: main + forked workers (pages shared by fork count in each).",
        "streams = store with ChunkShuffleSampler streams = workers (each worker decodes only "
        "its own chunks), which the trainer's MixedBatchSampler does not deal.",
        f"{'mode':<9} {'frames':>9} {'windows/s':>10} {'x in-RAM':>8} {'processes':>9} "
        f"{'peak RSS MB':>11} {'bytes/frame':>12}",
    ]
    for mode, r in results.items():
        per_frame = r.get("disk_bytes_per_frame", r.get("ram_bytes_per_frame"))
        where = "RAM" if mode == "in-ram" else "disk"
        lines.append(
            f"{mode:<9} {r['frames']:>9} {r['windows_per_s']:>10.0f} "
            f"{r['windows_per_s'] / ram:>8.2f} {r['processes']:>9} "
            f"{r['peak_rss_total_mb']:>11.0f} {per_frame:>8.0f} ({where})"
        )
    off = results["official"]
    scale = args.frames / off["frames"]
    lines.append(
        f"official db loaded whole in {off['load_s']:.1f} s; its peak RSS scaled to "
        f"{args.frames} frames ~ {off['peak_rss_main_mb'] * scale / 1024:.1f} GB "
        f"(built at {off['frames']} frames to fit next to the others)"
    )
    store = results["store"]
    lines.append(
        f"targets: store/in-RAM {store['windows_per_s'] / ram:.2f} (>= 0.8), store peak RSS "
        f"{store['peak_rss_total_mb'] / 1024:.2f} GB (<= 2), store/official bytes per frame "
        f"{store['disk_bytes_per_frame'] / off['disk_bytes_per_frame']:.2f} (<= 0.5)"
    )
    loads = ", ".join(f"{load:.1f}" for load in os.getloadavg())
    lines.append(f"load average at the end (1, 5, 15 min): {loads}")
    write_result(args.results, "loader.txt", "\n".join(lines))


if __name__ == "__main__":
    main()
