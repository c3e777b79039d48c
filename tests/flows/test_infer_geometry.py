"""`tcmr infer` puts the mesh on the person: a known SMPL body in a portrait PNG folder.

A real TCMR whose regressor decoders are zero outputs its init parameters for any feature,
so every frame's prediction is a known pose, shape and crop camera. The frames show that
body where the crop camera puts it: crop pixel (s (x + tx) + 1) 112 (tcmr.md 2.5), the crop
being the square of side 1.2 w centred on the box, scaled to 224 (section 4). The person
drifts right until it is half out of the frame. The pkl's orig_cam must project the mesh,
through the demo renderer's mapping (section 11.7), onto those pixels, and the overlay
video must draw the wireframe on the person and nowhere else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import joblib
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from flows.infer import run_inference
from model.checkpoint import save_checkpoint
from model.config import ModelConfig
from model.smpl import SMPL
from model.tcmr import build_model
from pipeline.sample.base_data import write_base_data
from pipeline.sample.figure import render
from storage.errors import TcmrError
from storage.settings import Settings

WIDTH, HEIGHT = 96, 160  # portrait: sx and sy differ, a swapped width/height shows
FRAMES = 16
TRACK_ID = 7
CROP_CAM = np.array([0.8, 0.05, 0.1])  # s, tx, ty
BETAS = np.linspace(-0.5, 0.5, 10)


def _pose() -> np.ndarray:
    """Axis-angle (24, 3): leaning upright for a y-down image, arms out, one knee bent."""
    pose = np.zeros((24, 3))
    pose[0] = [2.9, 0.0, 0.0]
    pose[16] = [0.0, 0.0, -1.0]
    pose[17] = [0.0, 0.0, 1.0]
    pose[5] = [0.6, 0.0, 0.0]
    return pose


def _boxes() -> np.ndarray:
    """Per frame [cx, cy, side] of the square person box: drifting right and growing."""
    t = np.arange(FRAMES)
    return np.column_stack([40.0 + 3.5 * t, np.full(FRAMES, 85.0), 60.0 + 2.0 * t])


@dataclass
class Run:
    out: Path
    frames: list[np.ndarray]
    """The input frames, BGR."""
    masks: list[np.ndarray]
    """Where the person is on each frame."""
    pixels: np.ndarray
    """[FRAMES, 6890, 2] where each vertex was drawn."""
    verts: np.ndarray
    """[6890, 3] the known mesh."""
    inputs: tuple[Path, Path, Path, Settings]
    """Frames folder, checkpoint, track file and settings of the run."""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("geometry")
    write_base_data(root / "base", seed=0)
    settings = Settings(base_data=root / "base")
    rotmat = Rotation.from_rotvec(_pose()).as_matrix()
    config = ModelConfig(hidden_size=16, n_layers=1, attention_size=8)
    model = build_model(config, settings)
    with torch.no_grad():
        for decoder in (model.regressor.decpose, model.regressor.decshape, model.regressor.deccam):
            decoder.weight.zero_()
            decoder.bias.zero_()
        # 6D layout view(-1, 3, 2): each joint's 3x2 first two columns, row-major.
        six_d = rotmat[:, :, :2].reshape(1, 144)
        model.regressor.init_pose.copy_(torch.from_numpy(six_d))
        model.regressor.init_shape.copy_(torch.from_numpy(BETAS[None]))
        model.regressor.init_cam.copy_(torch.from_numpy(CROP_CAM[None]))
    checkpoint = save_checkpoint(root / "fixed.pt", model, config, {"made_by": "test"})

    smpl = SMPL.from_settings(settings=settings)
    with torch.no_grad():
        body = smpl(torch.from_numpy(BETAS[None]).float(), torch.from_numpy(rotmat[None]).float())
    verts = body.vertices[0].numpy().astype(np.float64)
    faces = np.asarray(smpl.faces)

    folder = root / "frames"
    folder.mkdir()
    frames, masks, pixels, lines = [], [], [], []
    s, tx, ty = CROP_CAM
    for t, (cx, cy, side) in enumerate(_boxes()):
        half = 1.2 * side / 2  # image pixels per unit of the crop's [-1, 1] coordinates
        xy = np.column_stack(
            [cx + half * s * (verts[:, 0] + tx), cy + half * s * (verts[:, 1] + ty)]
        )
        grey = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
        frame = render((HEIGHT, WIDTH), xy, faces, verts[:, 2] + 10.0, backdrop=grey)
        cv2.imwrite(str(folder / f"frame_{t:04d}.png"), frame)
        frames.append(frame)
        masks.append(np.abs(frame.astype(int) - 128).max(axis=2) > 10)
        pixels.append(xy)
        x, y = cx - side / 2, cy - side / 2
        lines.append(f"{t + 1},{TRACK_ID},{x},{y},{side},{side},1,-1,-1,-1")
    tracks = root / "tracks.txt"
    tracks.write_text("\n".join(lines) + "\n")
    out = root / "out"
    run_inference(
        folder,
        checkpoint,
        out,
        tracks,
        device="cpu",
        min_track_len=FRAMES,
        batch_size=8,
        settings=settings,
    )
    return Run(out, frames, masks, np.stack(pixels), verts, (folder, checkpoint, tracks, settings))


def test_the_person_leaves_the_frame(run: Run) -> None:
    """The fixture is what it claims: whole at first, about half out at the end."""
    assert (run.pixels[0, :, 0] < WIDTH).all()
    outside = (run.pixels[-1, :, 0] >= WIDTH).mean()
    assert 0.3 < outside < 0.8


def test_outputs_are_the_known_body_and_boxes(run: Run) -> None:
    person = joblib.load(run.out / "tcmr_output.pkl")[TRACK_ID]
    np.testing.assert_array_equal(person["frame_ids"], np.arange(FRAMES))
    cx, cy, side = _boxes().T
    np.testing.assert_allclose(person["bboxes"], np.column_stack([cx, cy, 1.2 * side, 1.2 * side]))
    np.testing.assert_allclose(person["pred_cam"], np.tile(CROP_CAM, (FRAMES, 1)), atol=1e-6)
    np.testing.assert_allclose(person["betas"], np.tile(BETAS, (FRAMES, 1)), atol=1e-6)
    rotations = Rotation.from_rotvec(person["pose"].reshape(-1, 3)).as_matrix()
    expected = np.tile(Rotation.from_rotvec(_pose()).as_matrix(), (FRAMES, 1, 1))
    np.testing.assert_allclose(rotations, expected, atol=1e-5)
    np.testing.assert_allclose(person["verts"], np.tile(run.verts, (FRAMES, 1, 1)), atol=1e-5)


def test_orig_cam_puts_the_mesh_on_the_person(run: Run) -> None:
    """The demo renderer: orthographic (sx, sy, tx, ty), mesh turned 180 degrees about x,
    NDC to pixels with y down, so a point lands at ((sx (x + tx) + 1) W/2, (sy (y + ty) + 1) H/2)."""
    person = joblib.load(run.out / "tcmr_output.pkl")[TRACK_ID]
    sx, sy, tx, ty = (person["orig_cam"][:, i, None] for i in range(4))
    verts = person["verts"]
    u = (sx * (verts[..., 0] + tx) + 1) * WIDTH / 2
    v = (sy * (verts[..., 1] + ty) + 1) * HEIGHT / 2
    np.testing.assert_allclose(np.stack([u, v], axis=-1), run.pixels, atol=2e-3)


def test_overlay_draws_on_the_person_only(run: Run) -> None:
    capture = cv2.VideoCapture(str(run.out / "tcmr_frames_output.mp4"))
    drawn = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        drawn.append(frame)
    capture.release()
    assert len(drawn) == FRAMES and drawn[0].shape == (HEIGHT, WIDTH, 3)
    kernel = np.ones((9, 9), np.uint8)  # the joint dots reach 3 px past a joint
    for t in range(FRAMES):
        marks = np.abs(drawn[t].astype(int) - run.frames[t]).max(axis=2) > 80
        near = cv2.dilate(run.masks[t].astype(np.uint8), kernel).astype(bool)
        assert marks.sum() > 0.3 * run.masks[t].sum(), t
        assert marks[~near].sum() == 0, t


def _exited_pid() -> int:
    """The pid of a process that has exited and been reaped: no process has it now."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_rerun_replaces_the_earlier_output_as_a_whole(run: Run, tmp_path: Path) -> None:
    """README: the output folder is replaced as a whole, so nothing of the earlier run stays."""
    folder, checkpoint, tracks, settings = run.inputs
    out = tmp_path / "out"
    shutil.copytree(run.out, out)
    (out / "tcmr_other_mp4_output.mp4").write_bytes(b"an earlier run's overlay")
    renamed = tmp_path / "renamed.txt"
    renamed.write_text(tracks.read_text().replace(f",{TRACK_ID},", ",8,"))
    # What a killed run leaves (its process is gone), and a run still going (a live pid).
    dead = _exited_pid()
    for leftover in (f".out.partial-{dead}", f".out.old-{dead}", f".out.partial-{os.getppid()}"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "tcmr_output.pkl").write_bytes(b"half")
    run_inference(
        folder,
        checkpoint,
        out,
        renamed,
        device="cpu",
        min_track_len=FRAMES,
        batch_size=8,
        settings=settings,
    )
    names = ["tcmr_frames_output.mp4", "tcmr_output.npz", "tcmr_output.pkl", "timing.json"]
    assert sorted(p.name for p in out.iterdir()) == names
    assert list(joblib.load(out / "tcmr_output.pkl")) == [8]
    live = f".out.partial-{os.getppid()}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [live, "out", "renamed.txt"]


def test_inputs_inside_the_output_folder_are_refused(run: Run, tmp_path: Path) -> None:
    """Replacing the folder as a whole would delete a track file (or frames) kept in it."""
    folder, checkpoint, tracks, settings = run.inputs
    out = tmp_path / "out"
    shutil.copytree(run.out, out)
    kept = out / "tracks.txt"
    shutil.copy(tracks, kept)
    with pytest.raises(TcmrError, match=rf"--tracks {kept}: inside --out {out}"):
        run_inference(folder, checkpoint, out, kept, device="cpu", settings=settings)
    frames = out / "frames"
    shutil.copytree(folder, frames)
    with pytest.raises(TcmrError, match=rf"video {frames}: inside --out {out}"):
        run_inference(frames, checkpoint, out, tracks, device="cpu", settings=settings)
    assert kept.read_text() == tracks.read_text() and len(list(frames.iterdir())) == FRAMES
