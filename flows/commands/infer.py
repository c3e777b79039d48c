"""`tcmr infer`: run a trained TCMR on the user's own video, as the official demo does."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.commands.options import Device, output_folder, torch_device
from pipeline.frame_rate import DEMO_FPS
from storage.layout import SEQLEN


def _gender(value: str) -> str:
    from model.smpl import GENDERS

    if value not in GENDERS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(GENDERS)}")
    return value


def register(app: typer.Typer) -> None:
    """Add the `infer` command to the `tcmr` app."""

    @app.command("infer")
    def infer(
        video: Path = typer.Argument(..., help="A video file or a folder of images."),
        checkpoint: Path = typer.Option(
            ..., "--checkpoint", help="An official TCMR checkpoint (gen_state_dict) or ours."
        ),
        out: Path = typer.Option(
            ...,
            "--out",
            callback=output_folder,
            help="Output folder, new or of an earlier `tcmr infer` (replaced when complete).",
        ),
        tracks: Path | None = typer.Option(
            None,
            "--tracks",
            help="Person tracks: MOT-style CSV (frame,id,x,y,w,h; 1-based frames) or JSON "
            "(a list of per-frame entries with 'frame' and 'people', each person an 'id' and "
            "a 'bbox' x,y,w,h; 0-based frames). Without it a built-in background-subtraction "
            "detector and IoU tracker are used.",
        ),
        device: Device = None,
        smooth: bool = typer.Option(False, help="One-Euro smoothing of the output."),
        min_track_len: int = typer.Option(
            25, min=SEQLEN, help="Tracks with fewer frames are dropped (the official demo: 25)."
        ),
        batch_size: int = typer.Option(
            64, min=1, help="Crops per backbone batch and windows per TCMR batch."
        ),
        fps: float = typer.Option(
            DEMO_FPS,
            "--fps",
            min=0.0,
            show_default="29.97 (30000/1001, as the demo's ffmpeg step)",
            help="Frame rate TCMR sees (it was trained on 25-30 fps): a video more than 5% "
            "faster is thinned to the frames nearest to every 1/FPS s (60 fps: every 2nd); "
            "a slower video is used whole, never with repeated frames. Frame numbers in the "
            "outputs and in --tracks stay the video's own. 0 keeps every frame. Ignored for "
            "an image folder (no timestamps: every image is used).",
        ),
        gender: str = typer.Option(
            "neutral",
            callback=_gender,
            help="neutral, male or female: the SMPL model (SMPL_<GENDER>.pkl in the base "
            "data) that turns the predicted pose and shape into meshes and joints, as the "
            "demo's --gender.",
        ),
    ) -> None:
        """Track people, run TCMR and write tcmr_output.pkl/.npz, an overlay video and timings."""
        from flows.infer import run_inference

        report = run_inference(
            video,
            checkpoint,
            out,
            tracks_file=tracks,
            device=torch_device(device),
            smooth=smooth,
            min_track_len=min_track_len,
            batch_size=batch_size,
            progress=True,
            fps=fps,
            gender=gender,
        )
        typer.echo(report.render())
        if not report.track_ids:
            source = "--tracks" if tracks else "the built-in detector (a fixed camera)"
            typer.echo(
                f"warning: no person was tracked for {min_track_len} frames (--min-track-len) "
                f"by {source}; the outputs are empty",
                err=True,
            )
