"""Measure chunk height, shard height and codec for the store's `features` array.

For each layout: sequential write MB/s (whole shards, as `SegmentWriter` writes), size on
disk, random 16-frame window reads per second read directly (`z[s:s+16]`), and the same
windows drawn chunk-aware (windows of a shuffle buffer of 8 chunk blocks, read through a
block cache, as `model.data` does). Features are synthetic but video-like: a per-sequence
non-negative profile plus small per-frame changes, stored as float16.

Run: `.venv/bin/python bench/store_layout.py [--rows 65536]`; the numbers and the choice
are written down in `storage/README.md`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from bench._common import describe_machine

CODECS = {
    "none": None,
    "lz4-shuffle": BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.shuffle),
    "zstd1-bitshuffle": BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.bitshuffle),
}


def video_like_features(rows: int, seed: int = 0, seq_len: int = 600) -> np.ndarray:
    """float16 [rows, 2048]: per-sequence profile (ReLU of a normal) + per-frame noise."""
    rng = np.random.default_rng(seed)
    out = np.empty((rows, 2048), dtype=np.float16)
    for lo in range(0, rows, seq_len):
        hi = min(rows, lo + seq_len)
        base = np.maximum(rng.normal(0.3, 0.6, size=2048), 0).astype(np.float32)
        noise = rng.normal(0, 0.08, size=(hi - lo, 2048)).astype(np.float32)
        out[lo:hi] = np.maximum(base + noise, 0)
    return out


def measure(
    data: np.ndarray, chunk: int, shard: int | None, codec: str, windows: int, folder: Path
) -> dict[str, float]:
    path = folder / f"c{chunk}-s{shard}-{codec}"
    compressors = CODECS[codec]
    array = zarr.create_array(
        str(path),
        shape=data.shape,
        chunks=(chunk, data.shape[1]),
        shards=(shard, data.shape[1]) if shard else None,
        dtype=data.dtype,
        compressors=compressors if compressors is not None else None,
        fill_value=0,
    )
    step = shard or 8192
    tic = time.perf_counter()
    for lo in range(0, len(data), step):
        array[lo : lo + step] = data[lo : lo + step]
    write_s = time.perf_counter() - tic
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    files = sum(1 for p in path.rglob("*") if p.is_file())
    rng = np.random.default_rng(1)
    reader = zarr.open_array(str(path), mode="r")
    starts = rng.integers(0, len(data) - 16, size=windows)
    tic = time.perf_counter()
    for s in starts:
        reader[s : s + 16]
    direct = windows / (time.perf_counter() - tic)
    # Chunk-aware: 8 random blocks, all windows starting in them, through a block cache.
    blocks = rng.choice(len(data) // chunk - 1, size=8, replace=False)
    local = np.concatenate([np.arange(b * chunk, (b + 1) * chunk) for b in blocks])
    local = rng.permutation(local)
    cache: dict[int, np.ndarray] = {}
    tic = time.perf_counter()
    for s in local:
        rows = []
        for b in {s // chunk, (s + 15) // chunk}:
            if b not in cache:
                cache[b] = reader[b * chunk : (b + 1) * chunk]
            rows.append(cache[b])
        block = np.concatenate(rows) if len(rows) > 1 else rows[0]
        block[s % chunk : s % chunk + 16]
    aware = len(local) / (time.perf_counter() - tic)
    shutil.rmtree(path)
    return {
        "write_MBps": data.nbytes / write_s / 1e6,
        "MB": size / 1e6,
        "files": files,
        "direct_wps": direct,
        "aware_wps": aware,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=65536)
    parser.add_argument("--windows", type=int, default=1000)
    args = parser.parse_args()
    data = video_like_features(args.rows)
    print(describe_machine())
    print(f"{args.rows} x 2048 float16 ({data.nbytes / 1e6:.0f} MB raw)")
    print(f"{'chunk':>6} {'shard':>6} {'codec':>17} {'write MB/s':>10} {'MB':>6} {'files':>6} "
          f"{'direct w/s':>10} {'aware w/s':>10}")  # fmt: skip
    layouts = [
        (64, 8192, "lz4-shuffle"), (128, 8192, "lz4-shuffle"), (256, 8192, "lz4-shuffle"),
        (128, None, "lz4-shuffle"), (128, 16384, "lz4-shuffle"), (128, 8192, "none"),
        (128, 8192, "zstd1-bitshuffle"),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(dir=".") as folder:
        for chunk, shard, codec in layouts:
            r = measure(data, chunk, shard, codec, args.windows, Path(folder))
            print(f"{chunk:>6} {shard or '-':>6} {codec:>17} {r['write_MBps']:>10.0f} "
                  f"{r['MB']:>6.0f} {r['files']:>6} {r['direct_wps']:>10.0f} "
                  f"{r['aware_wps']:>10.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
