"""Import of official db files written in their exact layouts."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest
from official_db import h36m_db, insta_db, mpii3d_val_db, threedpw_db, two_d_db

from storage.errors import FormatError, MissingFileError, StoreError
from storage.importdb import import_db
from storage.reader import open_store


def test_3dpw_test_db(tmp_path: Path) -> None:
    db = threedpw_db(
        tmp_path / "3dpw_test_db.pt", {"downtown_walking_00_0": 20, "downtown_walking_00_1": 18}
    )
    plan = import_db(
        tmp_path / "3dpw_test_db.pt", "3dpw", "test", str(tmp_path / "s"), "3dpw/test/base"
    )
    assert len(plan.add) == 2
    store = open_store(str(tmp_path / "s"), "3dpw/test/base")
    assert [(s.name, s.person_id, s.length) for s in store.sequences] == [
        ("downtown_walking_00_0", 0, 20), ("downtown_walking_00_1", 1, 18),
    ]  # fmt: skip
    j2d = store.read("joints2d", 0, 38)
    np.testing.assert_allclose(j2d[:, 25:39], db["joints2D"], rtol=1e-6)
    assert not j2d[:, :25].any() and not j2d[:, 39:].any()
    j3d = store.read("joints3d", 0, 38)
    np.testing.assert_allclose(j3d[:, 25:39, :3], db["joints3D"], rtol=1e-6)
    assert (j3d[:, 25:39, 3] == 1).all() and not j3d[:, :25, 3].any()
    np.testing.assert_allclose(store.read("pose", 0, 38), db["pose"], rtol=1e-6)
    assert store.read("has_smpl", 0, 38).all()
    np.testing.assert_allclose(store.read("features", 0, 38), db["features"], atol=1e-3)
    assert store.provenance.crop_scale == 1.2 and len(store.provenance.source_manifest_digest) == 64


def test_reimport_replaces_only_changed_sequences(tmp_path: Path) -> None:
    path = tmp_path / "3dpw_test_db.pt"
    runs = {"a_0": 17, "b_0": 16, "c_0": 20}
    db = threedpw_db(path, runs)
    import_db(path, "3dpw", "test", str(tmp_path), "3dpw/test/base")
    keep = np.ones(53, dtype=bool)
    keep[17:33] = False  # drop b_0
    changed = {key: value[keep] for key, value in db.items()}
    changed["pose"][-1] += 1.0  # c_0 changed
    joblib.dump(changed, path)
    plan = import_db(path, "3dpw", "test", str(tmp_path), "3dpw/test/base")
    assert plan.unchanged == [("a_0", 0)] and plan.replace == [("c_0", 0)]
    assert plan.drop == [("b_0", 0)] and plan.add == []
    store = open_store(str(tmp_path), "3dpw/test/base")
    assert [s.name for s in store.sequences] == ["a_0", "c_0"]
    np.testing.assert_allclose(store.read("pose", 36, 37)[0], changed["pose"][-1], rtol=1e-6)


def test_mpii3d_val_db_masks_and_frame_ids(tmp_path: Path) -> None:
    db = mpii3d_val_db(tmp_path / "mpii3d_val_scale12_db.pt", {"subj1_seg0": 20})
    import_db(
        tmp_path / "mpii3d_val_scale12_db.pt", "mpii3d", "val", str(tmp_path), "mpii3d/val/base"
    )
    store = open_store(str(tmp_path), "mpii3d/val/base")
    assert store.read("frame_index", 0, 3).tolist() == [1, 2, 3]
    assert store.read("valid", 0, 4).tolist() == [True, True, False, True]
    j3d = store.read("joints3d", 0, 20)
    valid_joints = [*range(25, 40), 41, 43]
    assert (j3d[:, valid_joints, 3] == 1).all() and j3d[:, [0, 24, 40, 42, 48], 3].sum() == 0
    np.testing.assert_allclose(j3d[:, 41, :3], db["joints3D"][:, 41], rtol=1e-6)
    assert not store.read("has_smpl", 0, 20).any()
    # MPI-INF-3DHP keeps invalid frames for masking: one evaluation window per frame.
    assert len(store.windows("eval_tcmr")) == 20 and store.provenance.crop_scale == 1.2


def test_h36m_zero_smpl_is_masked(tmp_path: Path) -> None:
    h36m_db(tmp_path / "h36m_test_25fps_tight_db.pt", {"s_09_act_02_subact_01_ca_04_9": 16})
    import_db(
        tmp_path / "h36m_test_25fps_tight_db.pt", "h36m", "test", str(tmp_path), "h36m/test/tight"
    )
    store = open_store(str(tmp_path), "h36m/test/tight")
    assert not store.read("has_smpl", 0, 16).any() and store.read("has_3d", 0, 16).all()
    assert store.read("frame_index", 0, 16).tolist() == list(range(0, 32, 2))


def test_posetrack_pennaction_and_insta(tmp_path: Path) -> None:
    pt = two_d_db(
        tmp_path / "posetrack_train_db.pt", {"annotations/train/000001_mpii_train.json_3": 16}, 49
    )
    import_db(
        tmp_path / "posetrack_train_db.pt",
        "posetrack",
        "train",
        str(tmp_path),
        "posetrack/train/base",
    )
    store = open_store(str(tmp_path), "posetrack/train/base")
    assert store.sequences[0].person_id == 3
    np.testing.assert_allclose(store.read("joints2d", 0, 16), pt["joints2D"], rtol=1e-6)
    assert not store.read("has_3d", 0, 16).any()
    penn = two_d_db(tmp_path / "pennaction_train_db.pt", {"labels/0001.mat": 16}, 14)
    import_db(
        tmp_path / "pennaction_train_db.pt", "pennaction", "train", str(tmp_path), "penn/train/base"
    )
    store = open_store(str(tmp_path), "penn/train/base")
    np.testing.assert_allclose(store.read("joints2d", 0, 16)[:, 25:39], penn["joints2D"], rtol=1e-6)
    insta = insta_db(
        tmp_path / "insta_train_db.h5", {"train_0001.tfrecord-0": 16, "train_0001.tfrecord-1": 17}
    )
    import_db(tmp_path / "insta_train_db.h5", "insta", "train", str(tmp_path), "insta/train/base")
    store = open_store(str(tmp_path), "insta/train/base")
    assert [s.name for s in store.sequences] == ["train_0001.tfrecord-0", "train_0001.tfrecord-1"]
    j2d = store.read("joints2d", 0, 33)
    np.testing.assert_allclose(j2d[:, 38], insta["joints2D"][:, 13], rtol=1e-6)  # headtop
    np.testing.assert_allclose(j2d[:, 11], insta["joints2D"][:, 24], rtol=1e-6)  # OP RAnkle
    np.testing.assert_allclose(j2d[:, 24], insta["joints2D"][:, 0], rtol=1e-6)  # OP RHeel
    # The stored box makes the official 1.2x crop warp equal to the /224 normalisation.
    bbox = store.read("bbox", 0, 1)[0]
    x = 150.0
    assert abs(2 * (x - bbox[0]) / (bbox[2] * 1.2) - (2 * x / 224 - 1)) < 1e-5


def test_unknown_layout_lists_expected_and_found(tmp_path: Path) -> None:
    path = tmp_path / "3dpw_test_db.pt"
    db = threedpw_db(path, {"a_0": 16})
    db["joints2D"] = db["joints2D"][:, :13]
    del db["valid"]
    joblib.dump(db, path)
    with pytest.raises(
        FormatError, match=r"missing valid.*joints2D has per-row shape \(13, 3\).*Expected keys"
    ):
        import_db(path, "3dpw", "test", str(tmp_path), "3dpw/test/base")
    with pytest.raises(MissingFileError, match=r"nothere_db\.pt not found"):
        import_db(tmp_path / "nothere_db.pt", "3dpw", "test", str(tmp_path), "x/y/z")
    (tmp_path / "junk_db.pt").write_bytes(b"not a joblib file")
    with pytest.raises(FormatError, match=r"junk_db\.pt: not a joblib db file"):
        import_db(tmp_path / "junk_db.pt", "3dpw", "test", str(tmp_path), "x/y/z")
    nan = threedpw_db(path, {"a_0": 16})
    nan["features"][4, 2] = np.inf
    joblib.dump(nan, path)
    with pytest.raises(StoreError, match=r"a_0/person0: field features has NaN or inf"):
        import_db(path, "3dpw", "test", str(tmp_path), "3dpw/test/base")


def test_posetrack_features_are_recorded_at_the_default_crop_scale(tmp_path: Path) -> None:
    # tcmr.md 6: PoseTrack features were cropped at the extractor's default scale, 1.3.
    two_d_db(tmp_path / "posetrack_train_db.pt", {"a.json_0": 16}, 49)
    import_db(tmp_path / "posetrack_train_db.pt", "posetrack", "train", str(tmp_path), "pt/t/b")
    assert open_store(str(tmp_path), "pt/t/b").provenance.crop_scale == 1.3


def test_mpii3d_test_set_is_recorded_at_1_2_under_either_split_name(tmp_path: Path) -> None:
    # The MPI-INF-3DHP test set (released as mpii3d_val_scale12_db.pt; the readers accept
    # `val` and `test` for it) was cropped at 1.2, the train set at 1.0 (tcmr.md 6).
    mpii3d_val_db(tmp_path / "mpii3d_val_scale12_db.pt", {"subj1_seg0": 16})
    for split in ("val", "test"):
        import_db(tmp_path / "mpii3d_val_scale12_db.pt", "mpii3d", split, str(tmp_path), split)
        assert open_store(str(tmp_path), split).provenance.crop_scale == 1.2


def test_a_key_without_rows_is_a_layout_error(tmp_path: Path) -> None:
    path = tmp_path / "3dpw_test_db.pt"
    db = threedpw_db(path, {"a_0": 16})
    db["vid_name"] = "a_0"  # one name instead of one per row
    joblib.dump(db, path)
    with pytest.raises(
        FormatError, match=r"3dpw_test_db\.pt: not a 3dpw test db \(vid_name has no rows"
    ):
        import_db(path, "3dpw", "test", str(tmp_path), "3dpw/test/base")
