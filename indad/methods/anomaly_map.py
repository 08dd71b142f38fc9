"""Turning patch-level distances into a smooth pixel-level anomaly map."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """The normalised 1-D Gaussian kernel scipy.ndimage.gaussian_filter uses (radius ``int(truncate*sigma+0.5)``)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def _pad_symmetric(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Pad by mirroring with the edge sample repeated (scipy's ``mode="reflect"``), any pad width."""
    size = x.shape[dim]
    if pad == 0:
        return x
    # Index pattern of half-sample symmetric extension, valid for pads wider than the signal too.
    period = 2 * size
    idx = torch.arange(-pad, size + pad, device=x.device) % period
    idx = torch.where(idx >= size, period - 1 - idx, idx)
    return x.index_select(dim, idx)


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``(B, H, W)`` maps, equal to ``scipy.ndimage.gaussian_filter(m, sigma)`` per map."""
    if sigma <= 0:
        return maps
    kernel = gaussian_kernel1d(sigma).to(maps.device, maps.dtype)
    radius = kernel.numel() // 2
    x = maps.unsqueeze(1)
    x = _pad_symmetric(x, radius, dim=3)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = _pad_symmetric(x, radius, dim=2)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return x.squeeze(1)


class AnomalyMapGenerator(nn.Module):
    """Upsamples patch scores ``(B, h, w)`` bilinearly to the input size, then blurs them.

    Parameters
    ----------
    size:
        ``(H, W)`` of the network input.
    sigma:
        Standard deviation of the Gaussian blur in pixels (0 disables it).
    """

    def __init__(self, size: tuple[int, int], sigma: float = 4.0) -> None:
        super().__init__()
        if sigma < 0 or not math.isfinite(sigma):
            raise ValueError(f"blur sigma must be >= 0, got {sigma}")
        self.size = tuple(size)
        self.sigma = float(sigma)

    def forward(self, patch_scores: torch.Tensor) -> torch.Tensor:
        maps = F.interpolate(patch_scores.unsqueeze(1), size=self.size, mode="bilinear", align_corners=False)
        return gaussian_blur(maps.squeeze(1), self.sigma)
