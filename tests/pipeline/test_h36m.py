"""Human3.6M from Moon's JSON repackaging and from the raw release (CDF + mp4)."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.bbox import smooth_bbox
from pipeline.datasets.h36m import H36mRules, read_h36m
from pipeline.datasets.records import Quarantine
from pipeline.sample import actor
from pipeline.sample.h36m import MOON_JOINTS, write_h36m
from storage.errors import FormatError, MissingFileError
from storage.layout import SPIN_JOINT_NAMES

SPIN = {name: i for i, name in enumerate(SPIN_JOINT_NAMES)}
RAW = H36mRules(source="raw")
PLANTED = (("left_wrist", "lwrist"), ("right_hip", "rhip"), ("left_ankle", "lankle"),
           ("head_top", "headtop"), ("spine", "Spine (H36M)"), ("head", "Head (H36M)"))  # fmt: skip


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return write_h36m(tmp_path_factory.mktemp("h36m"), seed=1)


def _check_planted(record, camera_mm: np.ndarray, pixels: np.ndarray) -> None:
    for row, frame in ((0, 0), (7, 14)):
        assert record.frame_index[row] == frame
        points = camera_mm[frame]
        pelvis = points[actor.INDEX["pelvis"]]
        for source, spin_name in PLANTED:
            expected = (points[actor.INDEX[source]] - pelvis) / 1000.0
            got = record.joints3d[row, SPIN[spin_name]]
            np.testing.assert_allclose(got[:3], expected, atol=1e-5)
            assert got[3] == 1.0
            pixel = pixels[frame, actor.INDEX[source]]
            np.testing.assert_allclose(
                record.joints2d[row, SPIN[spin_name]], [*pixel, 1], atol=1e-3
            )
    assert (record.joints2d[:, SPIN["OP Nose"], 2] == 0).all()
    assert (record.joints3d[:, SPIN["OP Nose"], 3] == 0).all()


def test_json_source_counts_subsampling_and_names(sample: dict) -> None:
    records = list(read_h36m(sample["dir"], "train"))
    assert [(r.name, len(r)) for r in records] == [
        ("s_01_act_02_subact_01_ca_01", 17),
        ("s_01_act_02_subact_01_ca_04", 17),
    ]
    record = records[0]
    np.testing.assert_array_equal(record.frame_index, np.arange(0, 34, 2))
    assert record.images[1].path.endswith("s_01_act_02_subact_01_ca_01_000003.jpg")
    assert record.fps == 25.0 and record.crop_scale == 1.0
    assert record.joints3d.shape == (17, 49, 4) and record.joints3d.dtype == np.float32
    assert [r.name for r in read_h36m(sample["dir"], "test")] == [
        "s_09_act_02_subact_01_ca_01",
        "s_09_act_02_subact_01_ca_04",
    ]


def test_json_joints_swap_moon_legs_and_land_in_camera_metres(sample: dict) -> None:
    records = {r.name: r for r in read_h36m(sample["dir"], "train")}
    for folder, record in records.items():
        truth = sample["json"][folder]
        _check_planted(record, truth["camera_mm"], truth["pixels"])
    np.testing.assert_allclose(records["s_01_act_02_subact_01_ca_04"].camera["t"], [0, 0, 4])


def test_json_neuralannot_smpl_is_attached_per_frame_and_camera(sample: dict) -> None:
    record = next(read_h36m(sample["dir"], "train"))
    truth = sample["json"][record.name]
    assert record.has_smpl.all()
    np.testing.assert_allclose(record.pose, truth["pose"][::2], atol=1e-6)
    np.testing.assert_allclose(record.shape, truth["shape"][::2], atol=1e-6)
    assert not next(read_h36m(sample["dir"], "test")).has_smpl.any()


def _moon17_pixels(pixels: np.ndarray) -> np.ndarray:
    """The 17 Moon joints of the planted pixels (actor order), with confidence 1."""
    rows = [actor.INDEX[source] for _, source in MOON_JOINTS]
    return np.concatenate([pixels[:, rows], np.ones((len(pixels), 17, 1))], axis=2)


def test_bbox_is_smoothed_over_the_50fps_frames_then_subsampled(sample: dict) -> None:
    # datasets.md 6b: smooth bbox (0.3, sigma 8) x 0.9 on every frame, then [::2]. Smoothing
    # the kept 25 fps frames instead doubles the filters' reach in time.
    record = next(read_h36m(sample["dir"], "train"))
    points = _moon17_pixels(sample["json"][record.name]["pixels"])
    official, _ = smooth_bbox(points, vis_thresh=0.3, enlarge=0.9, sigma=8.0)
    np.testing.assert_allclose(record.bbox, official[::2], rtol=1e-5)
    after, _ = smooth_bbox(points[::2], vis_thresh=0.3, enlarge=0.9, sigma=8.0)
    assert np.abs(after - official[::2]).max() > 1.0  # the sample tells the two orders apart
    raw = next(read_h36m(sample["raw_dir"], "train", rules=RAW))
    points = _moon17_pixels(sample["raw"]["S1/Walking 1.54138969"]["pixels"])
    official, _ = smooth_bbox(points, vis_thresh=0.3, enlarge=0.9, sigma=8.0)
    np.testing.assert_allclose(raw.bbox, official[::2], rtol=1e-5)


def test_front_camera_option(sample: dict) -> None:
    front = H36mRules(front_only=True)
    assert [r.name for r in read_h36m(sample["dir"], "test", rules=front)] == [
        "s_09_act_02_subact_01_ca_04"
    ]
    raw_front = H36mRules(source="raw", front_only=True)
    assert [r.name for r in read_h36m(sample["raw_dir"], "test", rules=raw_front)] == [
        "S9_Walking_1.60457274"
    ]


def test_raw_source_reads_cdf_and_video_frames_and_skips_all(sample: dict) -> None:
    records = list(read_h36m(sample["raw_dir"], "train", rules=RAW))
    assert [r.name for r in records] == [
        f"S1_Walking_1.{cam}" for cam in ("54138969", "55011271", "58860488", "60457274")
    ]
    record = records[3]
    assert [im.frame for im in record.images[:3]] == [0, 2, 4]
    assert record.images[0].path.endswith("Videos/Walking 1.60457274.mp4")
    truth = sample["raw"]["S1/Walking 1.60457274"]
    _check_planted(record, truth["camera_mm"], truth["pixels"])
    moon = next(r for r in read_h36m(sample["dir"], "train") if r.name.endswith("ca_04"))
    np.testing.assert_allclose(record.joints3d, moon.joints3d, atol=1e-5)
    # intrinsics fitted to the D3_Positions_mono / D2_Positions pairs match the planted camera
    np.testing.assert_allclose(record.camera["K"], moon.camera["K"], rtol=1e-4)
    np.testing.assert_array_equal(record.camera["t"], [0, 0, 0])


def _copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def test_short_or_truncated_video_is_recorded_and_never_over_referenced(
    sample: dict, tmp_path: Path
) -> None:
    root = _copy(sample["raw_dir"], tmp_path)
    short = root / "S9" / "Videos" / "Walking 1.54138969.mp4"
    writer = cv2.VideoWriter(str(short), cv2.VideoWriter.fourcc(*"mp4v"), 50.0, (160, 160))
    for _ in range(32):  # the poses have 34 frames
        writer.write(np.full((160, 160, 3), 128, np.uint8))
    writer.release()
    truncated = root / "S9" / "Videos" / "Walking 1.55011271.mp4"
    truncated.write_bytes(truncated.read_bytes()[:5000])
    quarantine = Quarantine()
    records = {r.name: r for r in read_h36m(root, "test", quarantine, RAW)}
    assert [im.frame for im in records["S9_Walking_1.54138969"].images][-1] == 30
    assert len(records["S9_Walking_1.54138969"]) == 16
    assert "S9_Walking_1.55011271" not in records
    reasons = {s.key.rsplit("/", 1)[-1]: s.reason for s in quarantine.skips}
    assert reasons["S9_Walking_1.54138969"] == "34 pose frames but 32 video frames; rest left out"
    assert "cannot be opened" in reasons["S9_Walking_1.55011271"]
    assert len(records["S9_Walking_1.58860488"]) == 17


def test_missing_frames_nan_and_bad_camera_in_json(sample: dict, tmp_path: Path) -> None:
    root = _copy(sample["dir"], tmp_path)
    joints_path = root / "annotations" / "Human36M_subject9_joint_3d.json"
    joints = json.loads(joints_path.read_text())
    for frame in range(10, 16):
        del joints["2"]["1"][str(frame)]
    joints_path.write_text(json.dumps(joints))
    quarantine = Quarantine()
    records = list(read_h36m(root, "test", quarantine))
    assert records == []  # split at the gap into 5 + 9 frames: too short, never bridged
    assert any(
        "frames [10, 11, 12, 13, 14, 15]; the sequence is split" in s.reason
        for s in quarantine.skips
    )
    assert {s.key.rsplit("/", 1)[-1] for s in quarantine.skips if s.field == "images"} == {
        "s_09_act_02_subact_01_ca_01_seg0",
        "s_09_act_02_subact_01_ca_01_seg1",
        "s_09_act_02_subact_01_ca_04_seg0",
        "s_09_act_02_subact_01_ca_04_seg1",
    }

    joints["2"]["1"].update({str(f): [[float("nan")] * 3] * 17 for f in range(10, 16)})
    joints_path.write_text(json.dumps(joints))
    quarantine = Quarantine()
    assert list(read_h36m(root, "test", quarantine)) == []
    assert "NaN" in quarantine.skips[0].reason

    camera_path = root / "annotations" / "Human36M_subject1_camera.json"
    cameras = json.loads(camera_path.read_text())
    cameras["1"]["R"] = [1.0, 0.0]
    camera_path.write_text(json.dumps(cameras))
    with pytest.raises(FormatError, match=r"field 1/R has shape \(2,\)"):
        list(read_h36m(root, "train"))


def test_missing_and_corrupt_cdf(sample: dict, tmp_path: Path) -> None:
    root = _copy(sample["raw_dir"], tmp_path)
    features = root / "S1" / "MyPoseFeatures"
    (features / "D2_Positions" / "Walking 1.54138969.cdf").unlink()
    (features / "D3_Positions_mono" / "Walking 1.55011271.cdf").write_bytes(b"\x00" * 64)
    with pytest.raises(MissingFileError, match="D2_Positions file is missing"):
        list(read_h36m(root, "train", rules=RAW))
    quarantine = Quarantine()
    names = [r.name for r in read_h36m(root, "train", quarantine, RAW)]
    assert names == ["S1_Walking_1.58860488", "S1_Walking_1.60457274"]
    assert {s.field for s in quarantine.skips} == {"Pose"}
    assert "cannot be read" in quarantine.skips[1].reason


def test_missing_camera_and_misshaped_smpl_are_recorded(sample: dict, tmp_path: Path) -> None:
    root = _copy(sample["dir"], tmp_path)
    camera_path = root / "annotations" / "Human36M_subject1_camera.json"
    cameras = json.loads(camera_path.read_text())
    del cameras["4"]
    camera_path.write_text(json.dumps(cameras))
    smpl_path = root / "annotations" / "Human36M_subject1_SMPL_NeuralAnnot.json"
    smpl = json.loads(smpl_path.read_text())
    smpl["2"]["1"]["4"]["1"]["pose"] = [0.0] * 69
    smpl_path.write_text(json.dumps(smpl))
    with pytest.raises(FormatError, match=r"field 2/1/4/1/pose has shape \(69,\)"):
        list(read_h36m(root, "train"))
    quarantine = Quarantine()
    assert list(read_h36m(root, "train", quarantine)) == []
    assert [(s.key.rsplit("/", 1)[-1], s.field) for s in quarantine.skips] == [
        ("s_01_act_02_subact_01_ca_01", "pose"),
        ("s_01_act_02_subact_01_ca_04", "4"),
    ]
    assert "field 4 (camera) is missing" in quarantine.skips[1].reason


def test_malformed_annotation_json_fails_only_its_subject(sample: dict, tmp_path: Path) -> None:
    root = _copy(sample["dir"], tmp_path)
    both = H36mRules(subjects={"train": (1, 9)})
    camera_path = root / "annotations" / "Human36M_subject1_camera.json"
    camera_path.write_bytes(b"\xff\xfe{")
    quarantine = Quarantine()
    assert [r.name[:4] for r in read_h36m(root, "train", quarantine, both)] == ["s_09", "s_09"]
    (skip,) = quarantine.skips
    assert skip.key == "h36m/train/S1" and "Human36M_subject1_camera.json" in skip.reason
    with pytest.raises(FormatError, match=r"subject1_camera\.json: not valid JSON"):
        list(read_h36m(root, "train", rules=both))
    camera_path.write_text("[]")
    with pytest.raises(FormatError, match=r"subject1_camera\.json: .*not an object"):
        list(read_h36m(root, "train", rules=both))

    joints_path = root / "annotations" / "Human36M_subject9_joint_3d.json"
    joints = json.loads(joints_path.read_text())
    joints["2"]["1"] = [0.0]
    joints_path.write_text(json.dumps(joints))
    with pytest.raises(FormatError, match=r"subject9_joint_3d\.json: field 2/1 is not an object"):
        list(read_h36m(root, "test"))
    smpl_path = root / "annotations" / "Human36M_subject1_SMPL_NeuralAnnot.json"
    smpl = json.loads(smpl_path.read_text())
    smpl["2"]["1"]["4"] = "pose"
    smpl_path.write_text(json.dumps(smpl))
    shutil.copy(sample["dir"] / "annotations" / camera_path.name, camera_path)
    with pytest.raises(FormatError, match=r"NeuralAnnot\.json: field 2/1/4 is not an object"):
        list(read_h36m(root, "train"))
