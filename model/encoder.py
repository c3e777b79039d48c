"""TCMR's temporal encoder: a bi-GRU on the whole window plus past/future forecasting GRUs.

Submodule names follow the official `TemporalEncoder` so the `encoder.*` keys of an official
`gen_state_dict` load strictly. The past and future GRUs never see the current frame (unless
the `forecast_with_current` ablation asks for it), which is what removes the static-feature
shortcut that makes VIBE jitter.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.config import ModelConfig


class TemporalAttention(nn.Module):
    """Scores the [past, current, future] features; `fc` has no activation after it."""

    def __init__(self, feature_dim: int, n_tokens: int, attention_size: int) -> None:
        super().__init__()
        self.fc = nn.Linear(feature_dim, attention_size)
        self.attention = nn.Sequential(
            nn.Linear(attention_size * n_tokens, attention_size),
            nn.Tanh(),
            nn.Linear(attention_size, attention_size),
            nn.Tanh(),
            nn.Linear(attention_size, n_tokens),
            nn.Tanh(),
        )
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """tokens (N,K,D) -> (weighted sum (N,D), scores (N,K))."""
        scores = self.softmax(self.attention(self.fc(tokens).flatten(1)))
        return (scores.unsqueeze(-1) * tokens).sum(dim=1), scores


class TemporalEncoder(nn.Module):
    """Window features (N,T,D) -> the temporal features the regressor turns into SMPL."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d, h, layers = config.feature_dim, config.hidden_size, config.n_layers
        self.gru_cur = nn.GRU(d, h, num_layers=layers, bidirectional=True)
        self.linear_cur = nn.Linear(2 * h, d)
        if config.pose_forecast:
            self.gru_bef = nn.GRU(d, h, num_layers=layers)
            self.gru_aft = nn.GRU(d, h, num_layers=layers)
            self.linear_bef = nn.Linear(h, d)
            self.linear_aft = nn.Linear(h, d)
            self.attention = TemporalAttention(d, 3, config.attention_size)

    def _current(self, x: Tensor, frame: int | None) -> Tensor:
        """Bi-GRU feature of one frame (N,D), or of every frame (N,T,D) when frame is None."""
        y, _ = self.gru_cur(x.permute(1, 0, 2))
        y = y.permute(1, 0, 2) if frame is None else y[frame]
        static = x if frame is None else x[:, frame]
        feature = self.linear_cur(torch.relu(y))
        return feature + static if self.config.residual else feature

    def _forecast(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Past feature from the frames before the mid frame, future from those after, reversed."""
        mid = self.config.mid_frame
        extra = 1 if self.config.forecast_with_current else 0
        before = x[:, : mid + extra].permute(1, 0, 2)
        after = torch.flip(x[:, mid + 1 - extra :], dims=[1]).permute(1, 0, 2)
        y_bef, _ = self.gru_bef(before)
        y_aft, _ = self.gru_aft(after)
        past = self.linear_bef(torch.relu(y_bef[-1]))
        future = self.linear_aft(torch.relu(y_aft[-1]))
        return past, future

    def forward(self, x: Tensor, is_train: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Train: (N,K,D) features in `target_frames` order. Eval: (mid feature (N,D), scores)."""
        mid = self.config.mid_frame
        if self.config.all_frames:
            every = self._current(x, None)
            return every if is_train else (every[:, mid], x.new_ones(x.shape[0], 1))
        current = self._current(x, mid)
        if not self.config.pose_forecast:
            return current[:, None] if is_train else (current, x.new_ones(x.shape[0], 1))
        past, future = self._forecast(x)
        integrated, scores = self.attention(torch.stack([past, current, future], dim=1))
        if not is_train:
            return integrated, scores
        if self.config.forecast_target == "none":
            return integrated[:, None]
        return torch.stack([past, future, integrated], dim=1)
