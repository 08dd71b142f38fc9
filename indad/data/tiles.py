"""Tiles of the working image: where they start, cutting a batch into tiles and stitching their maps back.

A high-resolution image (the working size, ``image_size``) is cut into
overlapping tiles of the network's input size, evenly spread. Where tiles
overlap, their maps are averaged when stitched: a pixel near one tile's border
(less context, the backbone's zero padding) is then tempered by the neighbour
that sees it away from its border, where a maximum would keep every border
artefact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .transforms import as_size


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


def tile_origins(image_size: tuple[int, int], tiling: Tiling) -> list[tuple[int, int]]:
    """``(top, left)`` of every tile of an image of ``image_size`` ``(H, W)``, row by row."""
    (th, tw), overlap = tiling.size, tiling.overlap
    rows, cols = tile_starts(image_size[0], th, overlap), tile_starts(image_size[1], tw, overlap)
    return [(top, left) for top in rows for left in cols]


class TileGrid(nn.Module):
    """The tiles of a working image ``(H, W)``: cut a batch into tiles, stitch the tiles' maps back.

    Tiles of image ``b`` are rows ``b * count .. (b + 1) * count - 1`` of the tile
    batch, row by row of the grid.
    """

    coverage: torch.Tensor

    def __init__(self, image_size: tuple[int, int], tiling: Tiling) -> None:
        super().__init__()
        self.image_size, self.tiling = tuple(image_size), tiling
        self.origins = tile_origins(image_size, tiling)
        th, tw = tiling.size
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
