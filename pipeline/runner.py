"""The backbone on a device: uint8 crops in, 2048-d features out, one batch in flight.

Shared by the store builds and video inference. On CUDA the crops travel as uint8 through
pinned memory and are normalised on the device, the network runs channels_last under fp16
autocast, and the host prepares the next batch while the device computes; the first batch
is also run in IEEE fp32 to report the autocast error. On CPU frames go through one at a
time, so a frame's features never depend on how a run batched it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import numpy as np
import torch

from pipeline.crop import IMAGENET_MEAN, IMAGENET_STD, normalize

AUTOCAST_CHECK_FRAMES = 64
"""Frames of the first batch run again in IEEE fp32 to measure the autocast error: enough for
the statistic, where a whole 512-frame batch in IEEE fp32 costs several autocast batches."""

Payload = TypeVar("Payload")

_PRECISION_FLAGS = threading.Lock()


@contextmanager
def ieee_fp32() -> Iterator[None]:
    """CUDA float32 convolutions and matmuls in full IEEE precision inside (TF32 off).

    cuDNN convolutions use TF32 by default on Ampere and later, which is no float32 reference.
    The per-operation flags (torch >= 2.9) are set and restored as they were; they are
    process-wide, so a lock keeps two runners' save and restore from interleaving. Inside,
    torch's legacy `cudnn.allow_tf32` getter raises (it cross-checks the legacy flag against
    the per-operation ones); nothing here reads it.
    """
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    with _PRECISION_FLAGS:
        saved = conv.fp32_precision, matmul.fp32_precision
        conv.fp32_precision = matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            conv.fp32_precision, matmul.fp32_precision = saved


class BackboneRunner(Generic[Payload]):
    """Runs the backbone on uint8 crops; on CUDA with channels_last, autocast and pinned memory.

    `submit` launches a batch with a payload saying whose crops they are, and returns the
    previous batch's features with its payload, so the host prepares batch k+1 while the
    device computes batch k. Autocast is float16, not bfloat16:
    the features are stored as float16, so bfloat16 (7 mantissa bits to float16's 10) would
    only add error against the official fp32 features; every CUDA GPU since Volta runs float16
    on tensor cores, while `is_bf16_supported()` also says yes where bfloat16 is emulated.
    """

    def __init__(self, backbone: torch.nn.Module, device: torch.device, autocast: bool) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.dtype = torch.float16 if self.cuda and autocast else None
        self.backbone = backbone.to(device).eval()
        if self.cuda:
            # Every batch is (n, 3, 224, 224): cuDNN tunes its kernels once per batch size.
            torch.backends.cudnn.benchmark = True
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
            self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
            self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self._pending: tuple[torch.Tensor, torch.cuda.Event | None, Payload] | None = None
        self.check: tuple[float, float] | None = None

    @property
    def precision(self) -> str:
        return "fp32" if self.dtype is None else "fp16 autocast"

    def _forward(self, crops: np.ndarray) -> torch.Tensor:
        if not self.cuda:
            # One frame per call: oneDNN picks its kernels by batch size, so a frame's bytes
            # would otherwise depend on how the run happened to batch it (a resumed run
            # batches differently from an uninterrupted one).
            pixels = torch.from_numpy(normalize(crops))
            return torch.cat([self.backbone(pixels[i : i + 1]) for i in range(len(pixels))])
        host = torch.from_numpy(crops).pin_memory()
        # The CPU path's float32 operations in its order (ToTensor's /255, then Normalize).
        pixels = host.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float() / 255.0
        batch = ((pixels - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        if self.dtype is None:
            with ieee_fp32():  # "fp32" means it: cuDNN would otherwise convolve in TF32
                return self.backbone(batch)
        with torch.autocast("cuda", dtype=self.dtype):
            out = self.backbone(batch).float()
        if self.check is None:
            with ieee_fp32():
                reference = self.backbone(batch[:AUTOCAST_CHECK_FRAMES])
            diff = (out[:AUTOCAST_CHECK_FRAMES] - reference).abs()
            self.check = (float(diff.max()), float(diff.mean()))
        return out

    @torch.inference_mode()
    def submit(self, crops: np.ndarray, payload: Payload) -> tuple[np.ndarray, Payload] | None:
        """Launch `crops`; return (features, payload) of the batch launched before, if any."""
        out = self._forward(crops)
        done = None
        if self.cuda:
            host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
            host.copy_(out, non_blocking=True)
            done = torch.cuda.Event()
            # On the runner's device: the current device may be another (e.g. `cuda:1`).
            done.record(torch.cuda.current_stream(self.device))
            out = host
        previous, self._pending = self._pending, (out, done, payload)
        return self._finish(previous)

    def flush(self) -> tuple[np.ndarray, Payload] | None:
        previous, self._pending = self._pending, None
        return self._finish(previous)

    @staticmethod
    def _finish(
        item: tuple[torch.Tensor, torch.cuda.Event | None, Payload] | None,
    ) -> tuple[np.ndarray, Payload] | None:
        if item is None:
            return None
        out, done, payload = item
        if done is None:
            return out.numpy(), payload
        done.synchronize()  # this batch only; the one launched after it keeps running
        # A copy, so the pinned buffer returns to torch's host cache for the next batches:
        # a caller keeping rows (video inference keeps every feature of a video) would
        # otherwise hold one pinned buffer per batch, which the cache then keeps for good.
        return out.numpy().copy(), payload
