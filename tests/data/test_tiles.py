"""Tiles of the working image: where they start, cutting a batch into tiles and stitching their maps back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from indad.data.tiles import TileGrid, Tiling, tile_starts
from indad.errors import InputError
from indad.methods import PatchCore


@pytest.mark.parametrize(("length", "tile", "overlap"), [(64, 64, 0), (100, 32, 0), (100, 32, 8), (257, 64, 63)])
def test_tiles_cover_the_side_evenly_with_at_least_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] == length - tile
    steps = np.diff(starts)
    assert (steps <= tile - overlap).all() and (steps > 0).all()
    assert len(starts) == 1 or len(starts) == -(-(length - tile) // (tile - overlap)) + 1  # the fewest tiles


def test_tile_errors_name_the_value():
    with pytest.raises(InputError, match="does not fit"):
        tile_starts(50, 64, 0)
    with pytest.raises(InputError, match="overlap"):
        Tiling.parse({"size": 32, "overlap": 32})
    with pytest.raises(InputError, match="tile must be"):
        Tiling.parse({"size": 32, "stride": 8})
    with pytest.raises(InputError, match="tile"):
        Tiling.parse("big")
    assert Tiling.parse(32) == Tiling((32, 32), 0)
    assert Tiling.parse({"size": [16, 24], "overlap": 4}) == Tiling((16, 24), 4)
    with pytest.raises(InputError, match="does not fit"):
        PatchCore(image_size=64, tile=128)


def test_split_cuts_crops_and_stitch_puts_them_back():
    images = torch.randn(2, 3, 40, 56)
    grid = TileGrid((40, 56), Tiling((16, 24), 4))
    tiles = grid.split(images)
    assert tiles.shape == (2 * grid.count, 3, 16, 24)
    for b in range(2):
        for i, (top, left) in enumerate(grid.origins):
            assert torch.equal(tiles[b * grid.count + i], images[b, :, top : top + 16, left : left + 24])
    assert torch.allclose(grid.stitch(tiles[:, 0]), images[:, 0], atol=1e-6)  # the overlaps agree: their mean is them
    assert int(grid.coverage.min()) >= 1
