"""The synthetic SMPL body and base-data files: human-like, in the official layouts."""

from __future__ import annotations

import pickle
import pickletools
import sys

import numpy as np
import pytest
import scipy.sparse
import torch

from pipeline.sample.base_data import mean_params, write_base_data, write_smpl_pkl
from pipeline.sample.body import PARENTS, VERTEX_JOINT_IDS, synthetic_smpl_arrays


@pytest.fixture(scope="module")
def arrays() -> dict:
    return synthetic_smpl_arrays(0)


def test_official_shapes_and_dtypes(arrays: dict) -> None:
    assert arrays["v_template"].shape == (6890, 3)
    assert arrays["shapedirs"].shape == (6890, 3, 10)
    assert arrays["posedirs"].shape == (6890, 3, 207)
    assert scipy.sparse.issparse(arrays["J_regressor"])
    assert arrays["J_regressor"].shape == (24, 6890)
    assert arrays["weights"].shape == (6890, 24)
    assert arrays["kintree_table"].dtype == np.uint32
    assert arrays["kintree_table"][0, 0] == 4294967295
    assert arrays["kintree_table"][0, 1:].tolist() == list(PARENTS[1:])
    assert arrays["f"].shape == (13776, 3) and arrays["f"].dtype == np.uint32
    assert arrays["joint_regressor_extra"].shape == (9, 6890)
    assert arrays["joint_regressor_h36m"].shape == (17, 6890)


def test_body_is_human_sized_closed_and_skinned(arrays: dict) -> None:
    v, f = arrays["v_template"], arrays["f"].astype(np.int64)
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.6 < height < 1.85
    assert f.max() == 6889 and (f[:, 0] != f[:, 1]).all() and (f[:, 1] != f[:, 2]).all()
    tri = v[f]
    volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
    assert 0.04 < volume < 0.12  # m^3: a 40-120 kg person; positive = outward triangles
    np.testing.assert_allclose(arrays["weights"].sum(axis=1), 1.0)
    # The ring averages of J_regressor reproduce the rest joints; left is +x.
    joints = arrays["J_regressor"] @ v
    np.testing.assert_allclose(joints, arrays["J"], atol=1e-12)
    assert joints[1, 0] > 0 > joints[2, 0] and joints[16, 0] > 0.1
    for rows in (arrays["joint_regressor_extra"], arrays["joint_regressor_h36m"]):
        np.testing.assert_allclose(rows.sum(axis=1), 1.0)


def test_vertex_joint_ids_sit_on_their_body_parts(arrays: dict) -> None:
    v, joints = arrays["v_template"], arrays["J"]
    nose = v[VERTEX_JOINT_IDS["nose"]]
    assert nose[2] > joints[15, 2] + 0.05 and abs(nose[0]) < 0.01
    assert v[VERTEX_JOINT_IDS["leye"], 0] > 0 > v[VERTEX_JOINT_IDS["reye"], 0]
    for toe in ("LBigToe", "RBigToe"):
        assert v[VERTEX_JOINT_IDS[toe], 1] < joints[7, 1] and v[VERTEX_JOINT_IDS[toe], 2] > 0.1
    assert v[VERTEX_JOINT_IDS["lmiddle"], 0] > joints[22, 0]


def test_deterministic_and_genders_differ(arrays: dict) -> None:
    again = synthetic_smpl_arrays(0)
    np.testing.assert_array_equal(again["v_template"], arrays["v_template"])
    male = synthetic_smpl_arrays(0, gender="male")
    assert np.ptp(male["v_template"][:, 1]) > np.ptp(arrays["v_template"][:, 1])


def test_pkl_is_python2_style_with_chumpy_objects_and_old_sparse_path(
    tmp_path, arrays: dict
) -> None:
    path = write_smpl_pkl(tmp_path / "SMPL_NEUTRAL.pkl", arrays)
    raw = path.read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2, like the Python-2 official files
    globals_ = {arg for op, arg, _ in pickletools.genops(raw) if op.name == "GLOBAL"}
    assert {"chumpy.ch Ch", "scipy.sparse.csc csc_matrix"} <= globals_
    assert "numpy.core.multiarray _reconstruct" in globals_  # Python 2 names, byte strings
    assert not any(
        op.name in ("BINUNICODE", "SHORT_BINUNICODE") for op, _, _ in pickletools.genops(raw)
    )
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules
    with pytest.raises(ModuleNotFoundError, match="chumpy"), path.open("rb") as handle:
        pickle.load(handle, encoding="latin1")


def test_mean_pose_is_valid_interleaved_6d() -> None:
    pose = mean_params(0)["pose"].reshape(24, 3, 2)  # row-major 3x2 = [R[:,0] R[:,1]]
    np.testing.assert_allclose(pose[0], [[1, 0], [0, -1], [0, 0]])
    np.testing.assert_allclose(np.linalg.norm(pose, axis=1), 1.0)
    np.testing.assert_allclose(np.einsum("kj,kj->k", pose[:, :, 0], pose[:, :, 1]), 0, atol=1e-12)


def test_base_data_folder(tmp_path) -> None:
    files = write_base_data(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)
    checkpoint = torch.load(files["spin_model_checkpoint.pth.tar"], weights_only=True)
    model = checkpoint["model"]
    backbone = [k for k in model if k.startswith(("conv1", "bn1", "layer"))]
    # ResNet-50 without `fc`: stem 6 + 16 blocks x 18 + 4 downsamples x 6 = 318 entries.
    assert len(backbone) == 318 and len(model) == 318 + 13
    assert model["layer4.2.bn3.num_batches_tracked"].dtype == torch.int64
    assert model["layer3.0.downsample.0.weight"].shape == (1024, 512, 1, 1)
    assert all((model[k] > 0).all() for k in model if k.endswith("running_var"))
    assert model["fc1.weight"].shape == (1024, 2205) and model["init_pose"].shape == (1, 144)
    assert {"optimizer", "epoch", "batch_idx", "batch_size", "dataset_perm"} < set(checkpoint)
    with np.load(files["smpl_mean_params.npz"]) as params:
        assert params["pose"].shape == (144,) and params["pose"].dtype == np.float64
        assert params["cam"].tolist() == [0.9, 0.0, 0.0]
