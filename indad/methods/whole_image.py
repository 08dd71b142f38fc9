"""A method's scoring module made whole-image: overlapping tiles in, one stitched map out, a region of interest.

A high-resolution image (the working size, ``image_size``) is cut into
overlapping tiles of the network's input size; every tile is scored by the same
fitted module (one memory bank, one set of statistics), and the tiles' maps are
put back where they came from. Where tiles overlap, their maps are averaged: a
pixel near one tile's border (less context, the backbone's zero padding) is
then tempered by the neighbour that sees it away from its border, where a
maximum would keep every border artefact. The image score is the largest value
of the stitched map, so the score and the map always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data.transforms import as_size
from ..errors import InputError


@dataclass(frozen=True)
class Tiling:
    """Tiles of ``size`` ``(height, width)`` cut from the working image, neighbours sharing ``overlap`` pixels."""

    size: tuple[int, int]
    overlap: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < min(self.size):
            raise InputError(f"tile overlap must be >= 0 and smaller than the tile {self.size}, got {self.overlap}")

    @classmethod
    def parse(cls, value: Any) -> Tiling | None:
        """A :class:`Tiling` from None, a tile size (int or pair), ``{"size": ..., "overlap": ...}`` or a Tiling."""
        if value is None or isinstance(value, Tiling):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {"size", "overlap"}
            if unknown or "size" not in value:
                raise InputError(f"tile must be {{size: N, overlap: M}}, got {value!r}")
            overlap = value.get("overlap", 0)
            if not isinstance(overlap, int) or isinstance(overlap, bool):
                raise InputError(f"tile overlap must be an integer, got {overlap!r}")
            size = as_size(value["size"], "tile size")
        else:
            size, overlap = as_size(value, "tile"), 0
        assert size is not None
        return cls(size, overlap)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for model files and configs)."""
        return {"size": list(self.size), "overlap": self.overlap}


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles along one side of ``length`` pixels start: evenly spread, at least ``overlap`` shared.

    The first starts at 0 and the last ends at ``length``; their number is the
    fewest with steps of at most ``tile - overlap``.
    """
    if tile > length:
        raise InputError(f"a tile of {tile} pixels does not fit in the working size's {length}")
    if tile == length:
        return [0]
    count = math.ceil((length - tile) / (tile - overlap)) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


class TileGrid(nn.Module):
    """The tiles of a working image ``(H, W)``: cut a batch into tiles, stitch the tiles' maps back.

    Tiles of image ``b`` are rows ``b * count .. (b + 1) * count - 1`` of the tile
    batch, row by row of the grid.
    """

    coverage: torch.Tensor

    def __init__(self, image_size: tuple[int, int], tiling: Tiling) -> None:
        super().__init__()
        self.image_size, self.tiling = tuple(image_size), tiling
        (th, tw), overlap = tiling.size, tiling.overlap
        rows, cols = tile_starts(image_size[0], th, overlap), tile_starts(image_size[1], tw, overlap)
        self.origins = [(top, left) for top in rows for left in cols]
        coverage = torch.zeros(image_size)
        for top, left in self.origins:
            coverage[top : top + th, left : left + tw] += 1
        self.register_buffer("coverage", coverage)

    @property
    def count(self) -> int:
        """Tiles per image."""
        return len(self.origins)

    def split(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B * count, C, th, tw)``."""
        th, tw = self.tiling.size
        tiles = torch.stack([images[:, :, top : top + th, left : left + tw] for top, left in self.origins], dim=1)
        return tiles.flatten(0, 1)

    def stitch(self, maps: torch.Tensor) -> torch.Tensor:
        """Tile maps ``(B * count, th, tw)`` -> ``(B, H, W)``, overlaps averaged."""
        th, tw = self.tiling.size
        per_image = maps.reshape(-1, self.count, th, tw)
        out = maps.new_zeros((per_image.shape[0], *self.image_size))
        for i, (top, left) in enumerate(self.origins):
            out[:, top : top + th, left : left + tw] += per_image[:, i]
        return out / self.coverage


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
