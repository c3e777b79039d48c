"""TCMR assembled: temporal encoder, then the SPIN IEF regressor on each temporal feature.

The submodules are named `encoder` and `regressor` so official `gen_state_dict` keys map
1:1. The SMPL layer is attached (`set_smpl`) or passed per call but kept out of
`state_dict()`: it is licensed data the user supplies, not learned weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import Tensor, nn

from model.config import ModelConfig
from model.encoder import TemporalEncoder
from model.regressor import Regressor, load_spin_regressor
from model.smpl import SMPL
from storage.settings import Settings, get_settings


class TCMR(nn.Module):
    """Window features (N,T,2048) -> SMPL parameters, mesh and joints."""

    def __init__(self, config: ModelConfig, mean_params: Path | dict) -> None:
        super().__init__()
        self.config = config
        self.encoder = TemporalEncoder(config)
        self.regressor = Regressor(mean_params, n_iter=config.n_iter)
        # A plain list hides SMPL from state_dict(), parameters() and .to(): it is not ours.
        self._smpl: list[SMPL] = []

    def set_smpl(self, smpl: SMPL) -> TCMR:
        self._smpl = [smpl]
        return self

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> TCMR:
        """`.to()`/`.cuda()` move the attached SMPL too, though it is not a submodule."""
        super()._apply(fn, recurse)
        for smpl in self._smpl:
            smpl._apply(fn, recurse)
        return self

    @property
    def smpl(self) -> SMPL:
        if not self._smpl:
            raise RuntimeError("TCMR has no SMPL layer: call set_smpl() or pass smpl= to forward")
        return self._smpl[0]

    def forward(
        self,
        features: Tensor,
        is_train: bool = False,
        j14: bool = False,
        smpl: SMPL | None = None,
    ) -> tuple[dict[str, Tensor], Tensor | None]:
        """Train: outputs (N,K,...) in `target_frames` order and no scores.

        Eval: the mid frame's outputs (N,...) and the attention scores (N,3); `j14` regresses
        the 14 evaluation joints with J_regressor_h36m instead of the 49 SPIN joints.
        """
        smpl = smpl if smpl is not None else self.smpl
        n = features.shape[0]
        if is_train:
            temporal = self.encoder(features, is_train=True)
            k = temporal.shape[1]
            out = self.regressor(temporal.reshape(n * k, -1), smpl, j14=False)
            return {key: value.reshape(n, k, *value.shape[1:]) for key, value in out.items()}, None
        integrated, scores = self.encoder(features, is_train=False)
        return self.regressor(integrated, smpl, j14=j14), scores


def build_model(config: ModelConfig | None = None, settings: Settings | None = None) -> TCMR:
    """The training recipe's starting point: mean-param init, SPIN regressor, neutral SMPL."""
    settings = settings or get_settings()
    config = config or ModelConfig()
    model = TCMR(config, settings.base_data_file("smpl_mean_params.npz"))
    load_spin_regressor(model.regressor, settings.base_data_file("spin_model_checkpoint.pth.tar"))
    return model.set_smpl(SMPL.from_settings(gender="neutral", settings=settings))
