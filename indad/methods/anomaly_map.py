"""Turning patch-level distances into a smooth pixel-level anomaly map."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from torch import nn

from ..errors import InputError


def upsample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights of 1-D linear interpolation as torch's ``align_corners=False`` computes them."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    left = np.minimum(src.astype(np.int64), n_in - 1)
    right = np.minimum(left + 1, n_in - 1)
    frac = src - left
    matrix = np.zeros((n_out, n_in))
    np.add.at(matrix, (np.arange(n_out), left), 1.0 - frac)
    np.add.at(matrix, (np.arange(n_out), right), frac)
    return matrix


def blur_matrix(n: int, sigma: float) -> np.ndarray:
    """``(n, n)`` matrix of ``scipy.ndimage.gaussian_filter1d`` (reflect border) on length-``n`` signals."""
    eye = np.eye(n)
    return eye if sigma <= 0 else gaussian_filter1d(eye, sigma, axis=0, mode="reflect")


class AnomalyMapGenerator(nn.Module):
    """Upsamples patch scores ``(B, h, w)`` bilinearly to the input size, then blurs them.

    Both steps are linear and separable, so the map is ``R @ scores @ C.T`` with an
    ``(H, h)`` matrix ``R`` (blur after upsampling, along the rows) and a ``(W, w)``
    matrix ``C`` (along the columns), made once per score grid size: two small
    matrix products instead of an upsampled image and two wide convolutions.
    Equal to ``scipy.ndimage.gaussian_filter`` of the bilinearly upsampled scores
    up to float rounding.

    Parameters
    ----------
    size:
        ``(H, W)`` of the network input.
    sigma:
        Standard deviation of the Gaussian blur in pixels (0 disables it).
    output_size:
        ``(H', W')`` at most ``size``: the map's top-left part kept (None: all of it), e.g. a
        working image padded to a multiple of the backbone's stride cut back to its own size.
    """

    def __init__(self, size: tuple[int, int], sigma: float = 4.0, output_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        if sigma < 0 or not math.isfinite(sigma):
            raise InputError(f"blur sigma must be >= 0, got {sigma}")
        self.size = tuple(size)
        self.sigma = float(sigma)
        self.output_size = self.size if output_size is None else tuple(output_size)
        self._operators: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def operators(self, grid: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``R`` ``(H', h)`` and ``C`` ``(W', w)`` float32 for a score grid ``(h, w)`` (``output_size`` rows)."""
        key = (*grid, str(device))
        if key not in self._operators:
            (h, w), (height, width) = grid, self.size
            # numpy, not torch: an export traces the forward pass, and these are its constants.
            rows = blur_matrix(height, self.sigma) @ upsample_matrix(h, height)
            cols = blur_matrix(width, self.sigma) @ upsample_matrix(w, width)
            out_h, out_w = self.output_size
            self._operators[key] = (
                torch.from_numpy(rows[:out_h]).float().to(device),
                torch.from_numpy(cols[:out_w]).float().to(device),
            )
        return self._operators[key]

    def forward(self, patch_scores: torch.Tensor) -> torch.Tensor:
        grid = (int(patch_scores.shape[-2]), int(patch_scores.shape[-1]))  # fixed by the input size in an export
        rows, cols = self.operators(grid, patch_scores.device)
        return rows @ patch_scores.float() @ cols.T
