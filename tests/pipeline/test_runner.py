"""The backbone runner: batch-independent CPU features, payloads in order, IEEE fp32 scope."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.runner import BackboneRunner, ieee_fp32


class BatchSizeKernels(torch.nn.Module):
    """A backbone whose rounding depends on the batch size, as oneDNN's kernel choice does."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = pixels.flatten(1)[:, :8]
        return features + 1e-3 * (pixels.shape[0] - 1)


def test_cpu_features_do_not_depend_on_the_batch() -> None:
    crops = np.random.default_rng(4).integers(0, 256, (5, 6, 6, 3), dtype=np.uint8)
    runner: BackboneRunner[int] = BackboneRunner(
        BatchSizeKernels(), torch.device("cpu"), autocast=False
    )
    assert runner.submit(crops, -1) is None
    together, payload = runner.flush()
    assert payload == -1 and runner.flush() is None
    alone = []
    for i in range(len(crops)):
        launched_before = runner.submit(crops[i : i + 1], i)
        if launched_before is not None:  # the previous batch's features, with its payload
            assert launched_before[1] == i - 1
            alone.append(launched_before[0])
    features, payload = runner.flush()
    alone.append(features)
    assert payload == len(crops) - 1
    np.testing.assert_array_equal(together, np.concatenate(alone))
    assert together.shape == (5, 8)


def test_ieee_fp32_turns_tf32_off_inside_and_restores_the_flags() -> None:
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = conv.fp32_precision, matmul.fp32_precision
    try:
        conv.fp32_precision, matmul.fp32_precision = "tf32", "tf32"  # a user's TF32 choice
        with ieee_fp32():
            assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
            assert not matmul.allow_tf32
        assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
        with pytest.raises(KeyError), ieee_fp32():
            raise KeyError("the reference pass failed")
        assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
    finally:
        conv.fp32_precision, matmul.fp32_precision = before
