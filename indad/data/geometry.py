"""How a model sees an image: preprocessing to the working size, the tiles cut from it, the region inspected."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..errors import InputError
from .tiles import TileGrid, Tiling
from .transforms import Preprocess


@dataclass(frozen=True)
class ImageGeometry:
    """The working image's geometry, fixed once the working size is known.

    Attributes
    ----------
    preprocess:
        Image -> normalised working image (resize, crop, normalisation).
    tile_grid:
        The tiles the working image is cut into (None: the working image is the network input).
    roi_mask:
        The region of interest (bool, working size; None: everything is inspected).
    """

    preprocess: Preprocess
    tile_grid: TileGrid | None = None
    roi_mask: torch.Tensor | None = None

    @classmethod
    def build(
        cls,
        size: tuple[int, int],
        crop: tuple[int, int] | None,
        normalization: tuple[tuple[float, float, float], tuple[float, float, float]],
        resize: str,
        tiling: Tiling | None,
    ) -> ImageGeometry:
        """The geometry of a working size (``(H, W)``), its crop, the backbone's normalisation and the tiles."""
        preprocess = Preprocess(size, crop, *normalization, resize)
        return cls(preprocess, None if tiling is None else TileGrid(preprocess.output_size, tiling))

    @property
    def working_size(self) -> tuple[int, int]:
        """``(H, W)`` of the working image (after the crop)."""
        return self.preprocess.output_size

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of a network input: a tile's size, or the working size."""
        return self.working_size if self.tile_grid is None else self.tile_grid.tiling.size

    @property
    def tiles_per_image(self) -> int:
        """Network inputs per image: the tiles of the working image (1 untiled)."""
        return 1 if self.tile_grid is None else self.tile_grid.count

    def images_per_batch(self, batch_size: int) -> int:
        """Images read per batch so that a forward pass sees about ``batch_size`` network inputs (at least 1)."""
        return max(1, batch_size // self.tiles_per_image)

    def with_roi(self, mask: torch.Tensor) -> ImageGeometry:
        """This geometry with a region of interest: a mask of the working size (True = inspect)."""
        if tuple(mask.shape) != self.working_size:
            raise InputError(f"an ROI mask must be {self.working_size}, got {tuple(mask.shape)}")
        if not bool(mask.any()):
            raise InputError("the region of interest inspects nothing at the working size")
        return replace(self, roi_mask=mask.bool())
