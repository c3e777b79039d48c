"""Penn Action reader against the sample written from the format description."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io

from pipeline.datasets.penn_action import PennActionRules, read_penn_action
from pipeline.datasets.records import Quarantine
from pipeline.sample.penn_action import HIDDEN, ZERO_POINT
from storage.errors import FormatError, MissingFileError


def test_counts_shapes_and_planted_points(sample_dir: Path, sample_truth: dict[str, Any]) -> None:
    records = list(read_penn_action(sample_dir / "pennaction"))
    assert [(r.name, len(r)) for r in records] == [("0001", 20), ("0002", 18)]
    record = records[0]
    truth = sample_truth["pennaction"]["0001"]
    assert record.joints2d.shape == (20, 49, 3) and record.joints2d.dtype == np.float32
    assert not record.has_smpl.any() and not record.joints3d.any()
    assert record.images[0].path.endswith("frames/0001/000001.jpg")
    # index 12 (right ankle, VIBE labelling) -> spin 25; index 1 (left shoulder) -> spin 34
    np.testing.assert_allclose(record.joints2d[:, 25, 0], truth["x"][:, 12], atol=1e-3)
    np.testing.assert_allclose(record.joints2d[:, 34, 1], truth["y"][:, 1], atol=1e-3)
    assert np.flatnonzero(record.joints2d[0, :, 2]).tolist() == [*range(25, 37), 38]
    # Box: the visible joints' extent, square, no margin.
    frame = 2
    x, y = truth["x"][frame], truth["y"][frame]
    assert record.bbox[frame, 2] == pytest.approx(max(np.ptp(x), np.ptp(y)), rel=1e-5)
    assert record.bbox[frame, 0] == pytest.approx((x.min() + x.max()) / 2, rel=1e-5)


def test_visibility_rules_and_labelling(sample_dir: Path) -> None:
    frame, joint = ZERO_POINT  # at (0, 0) with flag 1: TCMR's rule masks it, VIBE's keeps it
    hidden_frame, hidden_joint = HIDDEN[0]  # flag 0 at real coordinates
    tcmr = next(read_penn_action(sample_dir / "pennaction"))
    vibe = next(
        read_penn_action(sample_dir / "pennaction", rules=PennActionRules(visibility="flag"))
    )
    assert tcmr.joints2d[frame, 38, 2] == 0 and vibe.joints2d[frame, 38, 2] == 1
    assert joint == 0 and hidden_joint == 5  # head top -> 38; left wrist -> 36
    assert tcmr.joints2d[hidden_frame, 36, 2] == 1 and vibe.joints2d[hidden_frame, 36, 2] == 0
    hmmr = next(
        read_penn_action(sample_dir / "pennaction", rules=PennActionRules(labelling="hmmr"))
    )
    np.testing.assert_array_equal(hmmr.joints2d[:, 33], tcmr.joints2d[:, 34])


def test_split_flag_and_too_short_videos(sample_dir: Path) -> None:
    assert [r.name for r in read_penn_action(sample_dir / "pennaction", "test")] == ["0002"]
    quarantine = Quarantine()
    rules = PennActionRules(min_frames=19)
    kept = list(read_penn_action(sample_dir / "pennaction", "train", quarantine, rules))
    assert [r.name for r in kept] == ["0001"]
    assert quarantine.skips[0].key == "pennaction/train/0002/person0"
    assert "18 frames < min_frames 19" in quarantine.skips[0].reason


def test_bad_inputs(sample_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "pennaction"
    shutil.copytree(sample_dir / "pennaction", root)
    label = root / "labels" / "0001.mat"
    mat = scipy.io.loadmat(label)
    mat["x"] = mat["x"][:, :12]
    scipy.io.savemat(label, {k: v for k, v in mat.items() if not k.startswith("__")})
    (root / "frames" / "0002" / "000018.jpg").unlink()
    quarantine = Quarantine()
    assert list(read_penn_action(root, quarantine=quarantine)) == []
    reasons = {skip.key: skip.reason for skip in quarantine.skips}
    assert "field x has shape (20, 12)" in reasons["pennaction/train/0001/person0"]
    assert "nframes is 18" in reasons["pennaction/train/0002/person0"]
    with pytest.raises(FormatError, match=r"0001\.mat: field x has shape"):
        list(read_penn_action(root))
    label.write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(FormatError, match=r"0001\.mat: not a readable"):
        list(read_penn_action(root))
    label.unlink()
    other = root / "labels" / "0002.mat"
    mat = scipy.io.loadmat(other)
    mat["y"][4, 2] = np.nan
    scipy.io.savemat(other, {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(FormatError, match=r"0002\.mat: field y contains NaN"):
        list(read_penn_action(root))


def test_root_or_official_archive_folder(sample_dir: Path, tmp_path: Path) -> None:
    # The official Penn_Action.tar.gz unpacks into Penn_Action/{frames,labels}.
    root = tmp_path / "pennaction"
    shutil.copytree(sample_dir / "pennaction", root / "Penn_Action")
    flat = list(read_penn_action(sample_dir / "pennaction"))
    nested = list(read_penn_action(root))
    assert [(r.name, len(r)) for r in nested] == [(r.name, len(r)) for r in flat]
    np.testing.assert_array_equal(nested[0].joints2d, flat[0].joints2d)
    assert nested[0].images[0].path.endswith("Penn_Action/frames/0001/000001.jpg")
    assert nested[0].content_hash == flat[0].content_hash
    with pytest.raises(MissingFileError, match="Penn_Action/labels"):
        list(read_penn_action(tmp_path / "empty"))


@pytest.mark.usefixtures("sample_truth")  # writes the sample files
def test_non_numeric_label_fields_are_named(sample_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "pennaction"
    shutil.copytree(sample_dir / "pennaction", root)
    label = root / "labels" / "0001.mat"
    mat = {k: v for k, v in scipy.io.loadmat(label).items() if not k.startswith("__")}
    for key, value in (("nframes", "twenty"), ("nframes", np.zeros((0, 0))),
                       ("x", "left"), ("train", "yes")):  # fmt: skip
        scipy.io.savemat(label, {**mat, key: value})
        with pytest.raises(FormatError, match=rf"0001\.mat: field {key} "):
            list(read_penn_action(root))
        quarantine = Quarantine()
        assert [r.name for r in read_penn_action(root, quarantine=quarantine)] == ["0002"]
        assert quarantine.skips[0].key == "pennaction/train/0001/person0"
