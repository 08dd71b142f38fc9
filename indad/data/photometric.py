"""Per-image photometric standardisation: each image's per-channel mean and spread brought to fixed values.

A lamp that ages or a camera whose exposure drifts changes every pixel of an image alike; bringing each image's
per-channel mean and standard deviation (on 0..1 values) to :data:`TARGET_MEAN` and :data:`TARGET_STD` before the
backbone's normalisation takes that change out, at fit and at scoring. It also takes out a change of the whole
image's colour: a defect that only shifts every pixel's colour alike is no longer seen.

The inputs here are already normalised by the backbone (``(x - mean) / std``); the standardisation is computed
on the 0..1 values behind them, with torch operations only (exported graphs carry it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

PHOTOMETRIC_MODES = ("none", "standardize")
"""``none``: images as they are; ``standardize``: per-image, per-channel mean and spread set to fixed values."""
TARGET_MEAN = (0.485, 0.456, 0.406)
TARGET_STD = (0.229, 0.224, 0.225)
MIN_STD = 1e-3
"""Below this spread (0..1 units) a channel is taken as flat: it is not amplified further."""


def _column(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(list(values), dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def standardize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised images ``(B, 3, H, W)`` (backbone ``mean``, ``std``) with each image's channels standardised."""
    m, s = _column(mean, images), _column(std, images)
    return _standardize(images, m, s, _column(TARGET_MEAN, images), _column(TARGET_STD, images))


def _standardize(
    images: torch.Tensor, m: torch.Tensor, s: torch.Tensor, target_mean: torch.Tensor, target_std: torch.Tensor
) -> torch.Tensor:
    raw = images * s + m
    centred = raw - raw.mean(dim=(2, 3), keepdim=True)
    spread = (centred * centred).mean(dim=(2, 3), keepdim=True).sqrt().clamp_min(MIN_STD)
    return (centred / spread * target_std + target_mean - m) / s


class Standardized(nn.Module):
    """A scoring module whose input images are standardised first (see :func:`standardize`); exportable."""

    mean: torch.Tensor
    std: torch.Tensor
    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, inner: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("target_mean", torch.tensor(TARGET_MEAN, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("target_std", torch.tensor(TARGET_STD, dtype=torch.float32).view(1, -1, 1, 1))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _standardize(images.float(), self.mean, self.std, self.target_mean, self.target_std).to(images.dtype)
        return self.inner(x)
