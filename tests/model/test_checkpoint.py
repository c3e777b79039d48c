"""Official checkpoint import and our checkpoint format.

The official model's forward pass is re-implemented here with plain torch ops from the
specification (tcmr.md §2.2-2.5): GRU gate equations read straight from the state dict,
attention, and the IEF loop. The model loaded from a synthetic official file must agree.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from model.checkpoint import (
    import_official_tcmr,
    load_checkpoint,
    load_model,
    load_official_tcmr,
    save_checkpoint,
)
from model.config import ModelConfig
from model.tcmr import TCMR
from pipeline.sample.tcmr_checkpoint import write_official_tcmr_checkpoint
from storage.errors import FormatError

NUMPY_SCALAR = [np._core.multiarray.scalar, np.dtype, np.dtypes.Float64DType]


def _gru_layer(x: Tensor, state: dict[str, Tensor], name: str, suffix: str) -> Tensor:
    """One GRU direction over time-major x (T,N,I) with PyTorch's gate order r, z, n."""
    w_ih, w_hh = state[f"{name}.weight_ih_{suffix}"], state[f"{name}.weight_hh_{suffix}"]
    b_ih, b_hh = state[f"{name}.bias_ih_{suffix}"], state[f"{name}.bias_hh_{suffix}"]
    hidden = w_hh.shape[1]
    h = x.new_zeros(x.shape[1], hidden)
    outputs = []
    for gi in x @ w_ih.T + b_ih:  # input projections of all steps at once
        gh = h @ w_hh.T + b_hh
        r = torch.sigmoid(gi[:, :hidden] + gh[:, :hidden])
        z = torch.sigmoid(gi[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
        n = torch.tanh(gi[:, 2 * hidden :] + r * gh[:, 2 * hidden :])
        h = (1 - z) * n + z * h
        outputs.append(h)
    return torch.stack(outputs)


def _gru(x: Tensor, state: dict[str, Tensor], name: str, bidirectional: bool) -> Tensor:
    for layer in (0, 1):
        forward = _gru_layer(x, state, name, f"l{layer}")
        if bidirectional:
            backward = _gru_layer(x.flip(0), state, name, f"l{layer}_reverse").flip(0)
            forward = torch.cat([forward, backward], dim=-1)
        x = forward
    return x


def _linear(x: Tensor, state: dict[str, Tensor], name: str) -> Tensor:
    return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]


def _rot6d(x: Tensor) -> Tensor:
    """SPIN layout: each 6-vector is a row-major 3x2 matrix whose columns are a1, a2."""
    m = x.reshape(-1, 3, 2)
    a1, a2 = m[..., 0], m[..., 1]
    b1 = a1 / a1.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    a2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2 / a2.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return torch.stack([b1, b2, torch.cross(b1, b2, dim=-1)], dim=-1)


def _axis_angle(rotmat: Tensor) -> Tensor:
    """Axis-angle of rotations away from pi, in float64 (log map via atan2)."""
    r = rotmat.double()
    v = (
        torch.stack(
            [r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]],
            -1,
        )
        / 2
    )
    sin = v.norm(dim=-1, keepdim=True)
    cos = (r.diagonal(dim1=-2, dim2=-1).sum(-1, keepdim=True) - 1) / 2
    angle = torch.atan2(sin, cos)
    return (v / sin.clamp_min(1e-12) * angle).float()


def _reference_forward(x: Tensor, state: dict[str, Tensor], smpl) -> dict[str, Tensor]:
    """TCMR eval forward for the mid frame of x (N,16,2048), from the spec alone."""
    t_major = x.permute(1, 0, 2)
    y_cur = _gru(t_major, state, "encoder.gru_cur", bidirectional=True)
    y_bef = _gru(t_major[:8], state, "encoder.gru_bef", bidirectional=False)
    y_aft = _gru(t_major[9:].flip(0), state, "encoder.gru_aft", bidirectional=False)
    current = _linear(torch.relu(y_cur[8]), state, "encoder.linear_cur")
    past = _linear(torch.relu(y_bef[-1]), state, "encoder.linear_bef")
    future = _linear(torch.relu(y_aft[-1]), state, "encoder.linear_aft")
    tokens = torch.stack([past, current, future], dim=1)
    reduced = _linear(tokens, state, "encoder.attention.fc").flatten(1)
    h = torch.tanh(_linear(reduced, state, "encoder.attention.attention.0"))
    h = torch.tanh(_linear(h, state, "encoder.attention.attention.2"))
    logits = torch.tanh(_linear(h, state, "encoder.attention.attention.4"))
    scores = torch.softmax(logits, dim=-1)
    feature = (scores[:, :, None] * tokens).sum(dim=1)

    n = x.shape[0]
    pose = state["regressor.init_pose"].expand(n, -1)
    shape = state["regressor.init_shape"].expand(n, -1)
    cam = state["regressor.init_cam"].expand(n, -1)
    for _ in range(3):
        xc = torch.cat([feature, pose, shape, cam], dim=1)
        xc = _linear(_linear(xc, state, "regressor.fc1"), state, "regressor.fc2")
        pose = pose + _linear(xc, state, "regressor.decpose")
        shape = shape + _linear(xc, state, "regressor.decshape")
        cam = cam + _linear(xc, state, "regressor.deccam")
    rotmat = _rot6d(pose).reshape(n, 24, 3, 3)
    out = smpl(shape, rotmat)
    joints = out.joints
    cam_t = torch.stack([cam[:, 1], cam[:, 2], 2 * 5000 / (224 * cam[:, 0] + 1e-9)], dim=-1)
    points = joints + cam_t[:, None]
    kp_2d = 5000 * points[..., :2] / points[..., 2:] / 112.0
    theta = torch.cat([cam, _axis_angle(rotmat).reshape(n, 72), shape], dim=1)
    return {
        "theta": theta,
        "verts": out.vertices,
        "kp_3d": joints,
        "kp_2d": kp_2d,
        "scores": scores,
        "rotmat": rotmat,
    }


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_official_tcmr_checkpoint(
        tmp_path_factory.mktemp("official") / "tcmr.pth.tar", seed=5
    )


@pytest.fixture(scope="module")
def official_state(official: Path) -> dict[str, Tensor]:
    with torch.serialization.safe_globals(NUMPY_SCALAR):
        return torch.load(official, weights_only=True)["gen_state_dict"]


def _rewrite(path: Path, target: Path, change) -> Path:
    with torch.serialization.safe_globals(NUMPY_SCALAR):
        checkpoint = torch.load(path, weights_only=True)
    change(checkpoint["gen_state_dict"])
    torch.save(checkpoint, target)
    return target


@torch.no_grad()
def test_official_checkpoint_matches_the_spec_reimplementation(
    official: Path, official_state, smpl
) -> None:
    state = import_official_tcmr(official)
    assert len(state) == 59
    assert sum(key.startswith("encoder.") for key in state) == 46
    model = load_official_tcmr(official, ModelConfig(), smpl)
    x = torch.randn(2, 16, 2048, generator=torch.Generator().manual_seed(0))
    out, scores = model(x)
    expected = _reference_forward(x, official_state, smpl)
    torch.testing.assert_close(scores, expected["scores"], rtol=0, atol=1e-5)
    for key in ("theta", "rotmat", "kp_3d", "verts", "kp_2d"):
        torch.testing.assert_close(out[key], expected[key], rtol=0, atol=1e-5, msg=key)
    assert math.isclose(float(scores.sum()), 2.0, rel_tol=1e-6)


def test_official_checkpoint_with_wrong_keys_names_each(official: Path, tmp_path: Path) -> None:
    def damage(state: dict[str, Tensor]) -> None:
        del state["encoder.gru_bef.bias_hh_l1"]
        state["encoder.extra_head.weight"] = torch.zeros(2)
        state["regressor.deccam.weight"] = torch.zeros(4, 1024)

    broken = _rewrite(official, tmp_path / "broken.pth.tar", damage)
    with pytest.raises(FormatError) as error:
        import_official_tcmr(broken)
    message = str(error.value)
    assert str(broken) in message
    assert "missing keys: encoder.gru_bef.bias_hh_l1" in message
    assert "unexpected keys: encoder.extra_head.weight" in message
    assert "regressor.deccam.weight (4, 1024) != (3, 1024)" in message


def test_not_a_tcmr_checkpoint_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "other.pth.tar"
    torch.save({"model": {}}, path)
    with pytest.raises(FormatError, match="gen_state_dict"):
        import_official_tcmr(path)
    code = tmp_path / "code.pth.tar"
    torch.save({"gen_state_dict": {}, "hook": os.getcwd}, code)  # a pickled callable
    with pytest.raises(FormatError, match=r"pickles posix\.getcwd"):
        import_official_tcmr(code)


SMALL = ModelConfig(hidden_size=8, attention_size=4)


@pytest.fixture
def small_model(base_data: Path, smpl) -> TCMR:
    torch.manual_seed(0)
    return TCMR(SMALL, base_data / "smpl_mean_params.npz").set_smpl(smpl).eval()


@torch.no_grad()
def test_our_checkpoint_round_trips(small_model: TCMR, smpl, tmp_path: Path) -> None:
    extra = {"optimizer": {"state": {}, "param_groups": [{"lr": 5e-5}]}, "epoch": 3}
    path = save_checkpoint(
        tmp_path / "ck.pt", small_model, SMALL, {"store": "3dpw/train/occ"}, extra
    )
    torch.load(path, weights_only=True)  # plain data only
    loaded = load_checkpoint(path)
    assert loaded.config == SMALL
    assert loaded.provenance == {"store": "3dpw/train/occ"}
    assert loaded.extra["epoch"] == 3
    assert not any(key.startswith("regressor.smpl") or "_smpl" in key for key in loaded.state_dict)
    model = load_model(path, smpl)
    assert all(p.requires_grad and p.device.type == "cpu" for p in model.parameters())
    x = torch.randn(2, 16, 2048)
    before, _ = small_model(x)
    after, _ = model(x)
    torch.testing.assert_close(after["theta"], before["theta"], rtol=0, atol=0)


def test_interrupted_save_keeps_the_previous_file(
    small_model: TCMR, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(tmp_path / "ck.pt", small_model, SMALL, {"run": 1})
    good = path.read_bytes()

    def killed(obj, f, *args, **kwargs) -> None:
        f.write(b"half a checkpoi")  # the open temporary file
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, small_model, SMALL, {"run": 2})
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]
    assert load_checkpoint(path).provenance == {"run": 1}


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        ("config", "hidden", r"ck\.pt.*'config'.*hidden"),
        ("state_dict", "encoder.linear_cur.bias", r"encoder\.linear_cur\.bias int != \(2048,\)"),
    ],
    ids=["unknown config key", "non-tensor weight"],
)
def test_damaged_checkpoint_names_the_field(
    small_model: TCMR, tmp_path: Path, section: str, key: str, message: str
) -> None:
    path = save_checkpoint(tmp_path / "ck.pt", small_model, SMALL, {})
    payload = torch.load(path, weights_only=True)
    payload[section][key] = 3
    torch.save(payload, path)
    with pytest.raises(FormatError, match=message):
        load_checkpoint(path)


def test_legacy_torch_format_with_numpy_scalars_loads(small_model: TCMR, tmp_path: Path) -> None:
    """Files from torch < 1.6 (the official code's torch 1.4) use the pre-zip format."""
    path = save_checkpoint(tmp_path / "ck.pt", small_model, SMALL, {})
    payload = torch.load(path, weights_only=True)
    payload["provenance"] = {"performance": np.float64(52.7)}
    torch.save(payload, path, _use_new_zipfile_serialization=False)
    assert load_checkpoint(path).provenance["performance"] == pytest.approx(52.7)
