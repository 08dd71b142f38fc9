"""A method's scoring module made whole-image: tiles in, one stitched map out, a region of interest applied.

Every tile is scored by the same fitted module (one memory bank, one set of
statistics) and the tiles' maps are stitched back (:mod:`indad.data.tiles`).
The image score is the largest value of the final map, so the score and the
map always agree.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.tiles import TileGrid


class WholeImageModule(nn.Module):
    """A fitted method's module over whole working images: tiles (optional) and a region of interest (optional).

    Normalised images ``(B, 3, H, W)`` -> (image scores ``(B,)``, maps ``(B, H, W)``).
    Outside the region of interest the map is 0; the image score is the map's maximum.
    """

    def __init__(self, inner: nn.Module, grid: TileGrid | None = None, roi: torch.Tensor | None = None) -> None:
        super().__init__()
        self.inner, self.grid = inner, grid
        self.register_buffer("roi", None if roi is None else roi.float())

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.grid is None:
            _, maps = self.inner(images)
        else:
            _, tile_maps = self.inner(self.grid.split(images))
            maps = self.grid.stitch(tile_maps)
        if self.roi is not None:
            maps = maps * self.roi
        return maps.amax(dim=(1, 2)), maps
