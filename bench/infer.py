"""Video inference throughput per stage and end to end, for one and for five tracks.

Runs `flows.infer.run_inference` (the code behind `tcmr infer`) on sample videos of 1 and 5
walking people, with track files of their true boxes (so both runs have exactly 1 and 5
tracks), and once more on the 5-person video with the built-in detector. Synthetic base
data and an official-layout TCMR checkpoint are written to a temporary folder first.
Figures are video frames per second of each stage, as the demo reports "TCMR FPS"; the
demo's own definition (crop + features + TCMR) is printed too. On a shared CPU the load
average is printed, because absolute figures then mean little.

Run: `.venv/bin/python bench/infer.py [--frames N] [--device cpu|cuda] [--batch-size B]`;
results go to `bench/results/infer-<device>.txt`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from bench._common import add_results_argument, describe_machine, write_result
from flows.infer import STAGES, InferenceReport, run_inference
from pipeline.sample.base_data import write_base_data
from pipeline.sample.people_video import mot_lines, write_people_video
from pipeline.sample.tcmr_checkpoint import write_official_tcmr_checkpoint
from storage.settings import Settings

FRAME_SIZE = (360, 640)


def _row(label: str, report: InferenceReport) -> str:
    demo = sum(report.seconds[s] for s in ("crop", "features", "TCMR"))
    cells = " ".join(f"{report.fps(stage):12.1f}" for stage in (*STAGES, "total"))
    return f"{label:<22} {len(report.track_ids):>6} {cells} {report.frames / demo:12.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    add_results_argument(parser)
    args = parser.parse_args()
    device_kind = "cuda" if args.device.startswith("cuda") else "cpu"
    lines = [
        describe_machine(args.device),
        f"{args.frames} frames of {FRAME_SIZE[1]}x{FRAME_SIZE[0]} mp4, batch {args.batch_size}; "
        "frames per second of video per stage",
        f"{'run':<22} {'tracks':>6} "
        + " ".join(f"{stage:>12}" for stage in (*STAGES, "total"))
        + f" {'demo TCMR':>12}",
    ]
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        write_base_data(root / "base")
        settings = Settings(base_data=root / "base")
        checkpoint = write_official_tcmr_checkpoint(root / "tcmr.pth.tar")
        runs = []
        for people in (1, 5):
            video = write_people_video(
                root / f"people{people}.mp4", people, args.frames, FRAME_SIZE
            )
            tracks = root / f"people{people}.csv"
            tracks.write_text("\n".join(mot_lines(video.boxes)) + "\n")
            runs.append((f"{people} tracks, track file", video.path, tracks))
        runs.append(("5 people, detector", root / "people5.mp4", None))
        for label, video_path, tracks_file in runs:
            report = run_inference(
                video_path,
                checkpoint,
                root / "out",
                tracks_file,
                device=args.device,
                min_track_len=16,
                batch_size=args.batch_size,
                settings=settings,
            )
            lines.append(_row(label, report))
            print(lines[-1], flush=True)
    write_result(args.results, f"infer-{device_kind}.txt", "\n".join(lines))


if __name__ == "__main__":
    main()
