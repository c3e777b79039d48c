"""Video inference: frames -> tracks -> features -> TCMR -> the demo's outputs and an overlay.

The thin composition that `tcmr infer` (and a flow) calls. Every output is written into a
temporary sibling folder and moved into place only when all of it is complete, so a failed
run leaves nothing behind and a re-run replaces the previous result in one step.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np

from model.infer import TrackInput, predict_tracks, project_to_image
from pipeline.frame_rate import DEMO_FPS
from pipeline.overlay import PersonDrawing, write_overlay
from pipeline.tracking import MIN_TRACK_LEN, read_tracks
from pipeline.video_features import FrameSource, extract_video_features
from storage.errors import MissingFileError, TcmrError
from storage.layout import COMMON_JOINTS, SEQLEN
from storage.settings import Settings, get_settings

PKL_NAME = "tcmr_output.pkl"
NPZ_NAME = "tcmr_output.npz"
TIMING_NAME = "timing.json"
STAGES: tuple[str, ...] = ("decode", "detect/track", "crop", "features", "TCMR", "write")

Outputs = dict[int, dict[str, np.ndarray | None]]


@dataclass
class InferenceReport:
    """What one run produced and how fast each stage went."""

    out_dir: Path
    overlay: Path
    frames: int
    """Frames of the video (all are decoded)."""
    track_ids: list[int]
    device: str
    kept_frames: int
    """Frames tracked and run through TCMR: fewer than `frames` when the video was thinned."""
    source_fps: float | None
    """The video's rate; None for an image folder (no timestamps)."""
    rate: float
    """Frames per second of the kept frames (and of the overlay)."""
    seconds: dict[str, float] = field(default_factory=dict)

    def fps(self, stage: str) -> float:
        """Video frames per second of one stage (or "total" for end to end): how fast the
        user's video went through, whether or not every frame was kept."""
        seconds = self.seconds.get(stage, 0.0)
        return self.frames / seconds if seconds > 0 else float("inf")

    def render(self) -> str:
        if self.kept_frames < self.frames:
            video = f"{self.frames} frames at {self.source_fps:.2f} fps"
            frames = f"{video}, {self.kept_frames} kept at {self.rate:.2f} fps"
        else:
            frames = f"{self.frames} frames"
        lines = [
            f"{frames}, {len(self.track_ids)} tracks {self.track_ids} on {self.device}",
            *(
                f"  {stage:<13} {self.seconds.get(stage, 0.0):8.2f} s {self.fps(stage):9.1f} fps"
                for stage in (*STAGES, "total")
            ),
            f"  (model load {self.seconds.get('load', 0.0):.2f} s, not in the total)",
            f"outputs in {self.out_dir}",
        ]
        return "\n".join(lines)


def npz_arrays(outputs: Outputs) -> dict[str, np.ndarray]:
    """Flat npz entries `<track id>_<key>` plus `track_ids` (None values are left out)."""
    arrays: dict[str, np.ndarray] = {"track_ids": np.array(sorted(outputs), dtype=np.int64)}
    for track_id, result in outputs.items():
        for key, value in result.items():
            if value is not None:
                arrays[f"{track_id}_{key}"] = value
    return arrays


def _people_lookup(
    outputs: Outputs, width: int, height: int
) -> Callable[[int], list[PersonDrawing]]:
    """Per frame, each person's projected mesh and 14 common joints (projected on demand)."""
    rows: dict[int, list[tuple[int, int]]] = {}
    for track_id, result in outputs.items():
        frame_ids = result["frame_ids"]
        assert frame_ids is not None
        for row, frame in enumerate(frame_ids):
            rows.setdefault(int(frame), []).append((track_id, row))

    def people_at(frame: int) -> list[PersonDrawing]:
        drawings = []
        for track_id, row in rows.get(frame, []):
            result = outputs[track_id]
            cam = result["orig_cam"][row : row + 1]  # type: ignore[index]
            verts = project_to_image(result["verts"][row : row + 1], cam, width, height)[0]  # type: ignore[index]
            joints3d = result["joints3d"][row : row + 1, COMMON_JOINTS]  # type: ignore[index]
            joints = project_to_image(joints3d, cam, width, height)[0]
            drawings.append(PersonDrawing(track_id, verts, joints, depth=-float(cam[0, 1])))
        return drawings

    return people_at


def _write_outputs(folder: Path, source: FrameSource, outputs: Outputs, faces: np.ndarray) -> Path:
    """Pkl (joblib, keyed by track id), npz and overlay video into `folder`."""
    joblib.dump(outputs, folder / PKL_NAME)
    with (folder / NPZ_NAME).open("wb") as handle:
        np.savez(handle, **npz_arrays(outputs))
    overlay = folder / f"tcmr_{source.name}_output.mp4"
    people_at = _people_lookup(outputs, source.width, source.height)
    write_overlay(overlay, source.frames(), people_at, faces, source.rate)
    return overlay


def _check_out(out: Path) -> None:
    """Refuse an `out` that publishing would destroy: a file, or a folder of other files.

    The finished outputs replace `out` as a whole, so only a new folder, an empty one or
    an earlier `tcmr infer` output (it holds timing.json) may be given.
    """
    if out.exists() and not out.is_dir():
        raise TcmrError(f"--out {out}: is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / TIMING_NAME).is_file():
        raise TcmrError(
            f"--out {out}: holds files that `tcmr infer` did not write (no {TIMING_NAME}); "
            "the outputs replace the folder as a whole, so give a new or empty folder"
        )


def _check_inputs_outside(out: Path, inputs: dict[str, Path | None]) -> None:
    """Refuse inputs kept inside `out`: publishing replaces it whole and would delete them."""
    root = out.resolve()
    for option, path in inputs.items():
        if path is not None and Path(path).resolve().is_relative_to(root):
            raise TcmrError(
                f"{option} {path}: inside --out {out}, which the outputs replace as a whole; "
                "move it out or give another --out"
            )


def _running(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _remove_leftovers(out: Path) -> None:
    """Delete the hidden partial/old siblings of `out` that killed runs left behind.

    They hold whole outputs (gigabytes for a long video) under names nobody sees; those of
    a process still running (a concurrent run, or this one) are left alone.
    """
    for path in out.parent.glob(f".{glob.escape(out.name)}.*-*"):
        kind, _, pid = path.name[len(out.name) + 2 :].partition("-")
        mine_or_dead = pid.isdigit() and (int(pid) == os.getpid() or not _running(int(pid)))
        if kind in ("partial", "old") and mine_or_dead:
            shutil.rmtree(path, ignore_errors=True)


def _publish(temp: Path, out: Path) -> None:
    """Swap the finished temp folder in for `out` (an older result is removed after)."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(temp, out)
    shutil.rmtree(old, ignore_errors=True)


def run_inference(
    video: Path,
    checkpoint: Path,
    out: Path,
    tracks_file: Path | None = None,
    device: str | None = None,
    smooth: bool = False,
    min_track_len: int = MIN_TRACK_LEN,
    batch_size: int = 64,
    settings: Settings | None = None,
    progress: bool = False,
    fps: float = DEMO_FPS,
    gender: str = "neutral",
) -> InferenceReport:
    """Run TCMR on a video or image folder and write the demo's outputs into `out`.

    A video faster than `fps` is thinned to the frames nearest to a 1/fps grid, as the demo
    resamples to 29.97 fps (0: every frame); frame numbers stay the video's own. The meshes
    and joints are those of the SMPL model of `gender` (neutral, male or female), as the
    demo's --gender. `progress` shows a bar of the video frames read, cropped and run
    through the backbone.
    """
    import torch

    from model.backbone import load_spin_backbone
    from model.checkpoint import load_model
    from model.smpl import GENDERS, SMPL

    if min_track_len < SEQLEN:
        raise TcmrError(f"--min-track-len must be at least {SEQLEN} (one TCMR window)")
    if batch_size < 1:
        raise TcmrError(f"--batch-size must be positive, got {batch_size}")
    if not fps >= 0:
        raise TcmrError(f"--fps must be 0 (every frame) or a positive rate, got {fps}")
    if gender not in GENDERS:
        raise TcmrError(f"--gender must be one of {', '.join(GENDERS)}, got {gender!r}")
    out = Path(out).absolute()
    _check_out(out)
    _check_inputs_outside(
        out, {"video": Path(video), "--tracks": tracks_file, "--checkpoint": Path(checkpoint)}
    )
    settings = settings or get_settings()
    device = device or settings.torch_device()
    source = FrameSource(video, max_fps=fps)
    tracks = read_tracks(tracks_file, source.frame_count) if tracks_file else None
    tick = time.perf_counter()
    try:
        smpl = SMPL.from_settings(gender, settings=settings)
    except MissingFileError as error:
        raise MissingFileError(f"--gender {gender}: {error}") from error
    model = load_model(checkpoint, smpl).to(device)
    smpl.to(device)
    backbone = load_spin_backbone(settings.base_data_file("spin_model_checkpoint.pth.tar"))
    load_seconds = time.perf_counter() - tick

    start = time.perf_counter()
    features = extract_video_features(
        source, backbone, tracks, min_track_len, batch_size, device=device, progress=progress
    )
    tick = time.perf_counter()
    inputs = [TrackInput(t.track_id, t.frame_ids, t.bboxes, t.features) for t in features.tracks]
    with torch.inference_mode():
        outputs = predict_tracks(model, inputs, source.width, source.height, batch_size, smooth)
    seconds = {**features.seconds, "TCMR": time.perf_counter() - tick}

    tick = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out)
    temp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    temp.mkdir()
    try:
        overlay = _write_outputs(temp, source, outputs, smpl.faces)
        seconds["write"] = time.perf_counter() - tick
        seconds["total"] = time.perf_counter() - start
        seconds["load"] = load_seconds
        report = InferenceReport(
            out,
            out / overlay.name,
            source.frame_count,
            sorted(outputs),
            device,
            features.kept_frames,
            None if source.images else source.fps,
            source.rate,
            seconds,
        )
        timing = {
            "frames": report.frames,
            "source_fps": report.source_fps,
            "kept_frames": report.kept_frames,
            "kept_fps": report.rate,
            "gender": gender,
            "device": device,
            "seconds": seconds,
        }
        # A stage too quick to time has no finite rate; JSON gets null rather than Infinity.
        rates = {stage: report.fps(stage) for stage in (*STAGES, "total")}
        timing["fps"] = {k: v if np.isfinite(v) else None for k, v in rates.items()}
        (temp / TIMING_NAME).write_text(json.dumps(timing, indent=2) + "\n")
        _publish(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return report
