"""The temporal encoder's frame arithmetic, checked by perturbing inputs and hooking attention."""

from __future__ import annotations

import pytest
import torch

from model.config import ModelConfig, target_frames
from model.encoder import TemporalEncoder

SMALL = {"feature_dim": 12, "hidden_size": 6, "attention_size": 5}


def _encoder(**overrides: object) -> TemporalEncoder:
    torch.manual_seed(0)
    return TemporalEncoder(ModelConfig(**{**SMALL, **overrides})).eval()


def _window(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 16, SMALL["feature_dim"], generator=torch.Generator().manual_seed(1))


def _responses(encoder: TemporalEncoder, *frames: int) -> list[torch.Tensor]:
    """Training outputs for the window, then for it with each given frame perturbed."""
    x = _window()
    outputs = [encoder(x, is_train=True)]
    for frame in frames:
        y = x.clone()
        y[:, frame] += 1.0
        outputs.append(encoder(y, is_train=True))
    return outputs


def test_official_parameter_count_and_key_count() -> None:
    with torch.device("meta"):
        encoder = TemporalEncoder(ModelConfig())
    assert sum(p.numel() for p in encoder.parameters()) == 78_437_891
    assert len(encoder.state_dict()) == 46
    assert sum(p.numel() for p in encoder.gru_cur.parameters()) == 37_773_312
    assert sum(p.numel() for p in encoder.attention.parameters()) == 787_971


@torch.no_grad()
def test_current_frame_reaches_neither_forecasting_gru() -> None:
    base, moved = _responses(_encoder(), 8)
    torch.testing.assert_close(moved[:, 0], base[:, 0], rtol=0, atol=0)  # past
    torch.testing.assert_close(moved[:, 1], base[:, 1], rtol=0, atol=0)  # future
    assert not torch.allclose(moved[:, 2], base[:, 2])  # integrated sees it via the bi-GRU


@torch.no_grad()
def test_past_sees_frames_before_and_future_frames_after() -> None:
    base, early, late, nearest_past, nearest_future = _responses(_encoder(), 3, 12, 7, 9)
    torch.testing.assert_close(early[:, 1], base[:, 1], rtol=0, atol=0)
    assert not torch.allclose(early[:, 0], base[:, 0])
    torch.testing.assert_close(late[:, 0], base[:, 0], rtol=0, atol=0)
    assert not torch.allclose(late[:, 1], base[:, 1])
    # the mid frame's neighbours: the last frame each forecasting GRU sees
    assert not torch.allclose(nearest_past[:, 0], base[:, 0])
    assert not torch.allclose(nearest_future[:, 1], base[:, 1])


@torch.no_grad()
def test_forecast_with_current_feeds_the_mid_frame_to_both() -> None:
    base, moved = _responses(_encoder(forecast_with_current=True), 8)
    assert not torch.allclose(moved[:, 0], base[:, 0])
    assert not torch.allclose(moved[:, 1], base[:, 1])


@torch.no_grad()
def test_attention_weights_sum_to_one_and_integrate_past_current_future() -> None:
    encoder = _encoder()
    x = _window(3)
    seen: list[torch.Tensor] = []
    handle = encoder.attention.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    train = encoder(x, is_train=True)
    integrated, scores = encoder(x, is_train=False)
    handle.remove()
    tokens = seen[1]
    assert scores.shape == (3, 3)
    torch.testing.assert_close(scores.sum(dim=1), torch.ones(3))
    torch.testing.assert_close(integrated, (scores[:, :, None] * tokens).sum(dim=1))
    torch.testing.assert_close(tokens[:, 0], train[:, 0])  # token order [past, current, future]
    torch.testing.assert_close(tokens[:, 2], train[:, 1])
    torch.testing.assert_close(integrated, train[:, 2])
    # The current token is the bi-GRU output at frame 8 through ReLU and linear_cur.
    y, _ = encoder.gru_cur(x.permute(1, 0, 2))
    torch.testing.assert_close(tokens[:, 1], encoder.linear_cur(torch.relu(y[8])))
    # Scores are a softmax of tanh logits, so each lies in [e^-1, e^1] / sum.
    assert float(scores.max() / scores.min()) <= torch.e**2 + 1e-5


@torch.no_grad()
def test_residual_adds_the_static_mid_frame_feature() -> None:
    plain = _encoder(pose_forecast=False, forecast_target="none")
    residual = _encoder(pose_forecast=False, forecast_target="none", residual=True)
    residual.load_state_dict(plain.state_dict())
    x = _window()
    torch.testing.assert_close(residual(x)[0], plain(x)[0] + x[:, 8])


@pytest.mark.parametrize(
    ("overrides", "train_k", "eval_k"),
    [
        ({}, 3, 3),
        ({"forecast_target": "adjacent"}, 3, 3),
        ({"forecast_target": "none"}, 1, 3),
        ({"forecast_with_current": True}, 3, 3),
        ({"residual": True}, 3, 3),
        ({"pose_forecast": False}, 1, 1),
        ({"pose_forecast": False, "residual": True}, 1, 1),
        ({"pose_forecast": False, "all_frames": True, "residual": True}, 16, 1),
    ],
)
@torch.no_grad()
def test_ablation_output_shapes(overrides: dict, train_k: int, eval_k: int) -> None:
    encoder = _encoder(**overrides)
    x = _window()
    train = encoder(x, is_train=True)
    assert train.shape == (2, train_k, SMALL["feature_dim"])
    assert len(target_frames(encoder.config)) == train_k
    feature, scores = encoder(x, is_train=False)
    assert feature.shape == (2, SMALL["feature_dim"])
    assert scores.shape == (2, eval_k)
    torch.testing.assert_close(scores.sum(dim=1), torch.ones(2))
    assert hasattr(encoder, "gru_bef") == encoder.config.pose_forecast


@torch.no_grad()
def test_all_frames_baseline_feature_k_belongs_to_frame_k() -> None:
    encoder = _encoder(pose_forecast=False, all_frames=True, residual=True)
    x = _window()
    every = encoder(x, is_train=True)
    feature, _ = encoder(x, is_train=False)
    torch.testing.assert_close(feature, every[:, 8])
    y, _ = encoder.gru_cur(x.permute(1, 0, 2))
    torch.testing.assert_close(every[:, 4], encoder.linear_cur(torch.relu(y[4])) + x[:, 4])
