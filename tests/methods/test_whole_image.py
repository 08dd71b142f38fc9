"""Tiles of the working image: where they start, cutting and stitching, and tiled models against untiled ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from indad import load
from indad.errors import InputError
from indad.methods import SPADE, PaDiM, PatchCore
from indad.methods.whole_image import TileGrid, Tiling, WholeImageModule, tile_starts


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
    with pytest.raises(ValueError, match="tile"):
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


def test_overlaps_are_averaged_and_the_score_is_the_map_maximum():
    grid = TileGrid((8, 12), Tiling((8, 8), 4))  # two tiles, columns 4..7 shared

    class Constant(torch.nn.Module):  # tile k of each image scores k + 1 everywhere
        def forward(self, x):
            maps = (torch.arange(x.shape[0]) % 2 + 1).float()[:, None, None].expand(-1, *x.shape[-2:])
            return maps.amax(dim=(1, 2)), maps

    roi = torch.ones(8, 12, dtype=torch.bool)
    roi[:, 10:] = False
    scores, maps = WholeImageModule(Constant(), grid, roi)(torch.zeros(1, 3, 8, 12))
    assert torch.equal(maps[0, 0], torch.tensor([1, 1, 1, 1, 1.5, 1.5, 1.5, 1.5, 2, 2, 0, 0]))
    assert float(scores[0]) == 2.0


def _tensors(hazelnut, size, count):
    from indad.data import Preprocess, read_image

    model = PaDiM(image_size=size)
    pre: Preprocess = model.preprocess
    paths = sorted((hazelnut / "train" / "good").iterdir())[:count]
    return torch.stack([pre.image(read_image(p)) for p in paths])


def test_padim_keeps_a_gaussian_per_tile_position(hazelnut):
    """A PaDiM on two side-by-side tiles scores each half as a PaDiM fitted on that half alone."""
    data = _tensors(hazelnut, (64, 128), 12)
    test = data[:3] + 0.3 * torch.randn(3, 3, 64, 128, generator=torch.Generator().manual_seed(0))
    common = {"d_reduced": 20, "blur_sigma": 2.0, "progress": False}
    tiled = PaDiM(image_size=(64, 128), tile=64, **common).fit(data)
    halves = [PaDiM(image_size=64, **common).fit(data[..., cols]) for cols in (slice(0, 64), slice(64, 128))]
    maps = tiled.predict(test).maps
    for model, cols in zip(halves, (slice(0, 64), slice(64, 128)), strict=True):
        np.testing.assert_allclose(maps[..., cols], model.predict(test[..., cols]).maps, rtol=1e-4, atol=1e-3)


def test_one_tile_as_large_as_the_image_is_the_untiled_model(hazelnut):
    common = {"image_size": 96, "progress": False, "search": "exact", "backbone_runtime": "torch"}
    train = sorted((hazelnut / "train" / "good").iterdir())[:8]
    untiled, tiled = PatchCore(**common).fit(train), PatchCore(tile=96, **common).fit(train)
    a, b = untiled.predict(hazelnut), tiled.predict(hazelnut)
    np.testing.assert_allclose(b.maps, a.maps, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b.scores, a.scores, rtol=1e-5)


@pytest.mark.parametrize("method", [PatchCore, PaDiM, SPADE])
def test_tiled_methods_fit_score_and_reload(method, hazelnut, tmp_path):
    train = sorted((hazelnut / "train" / "good").iterdir())[:10]
    model = method(image_size=(96, 128), tile={"size": 64, "overlap": 16}, resize="fit", progress=False).fit(train)
    assert model.tiles_per_image == 6
    result = model.evaluate(hazelnut, keep_maps=True)
    maps = result["maps"]
    assert maps.shape == (10, 96, 128)
    np.testing.assert_allclose(result["scores"], maps.max(axis=(1, 2)), rtol=1e-6)
    assert result["image_auroc"] >= 0.7 and result["pixel_auroc"] >= 0.85  # hazelnut's defects are found
    again = load(model.save(tmp_path / "m.indad"))
    assert again.tile == model.tile and again.preprocess == model.preprocess
    np.testing.assert_allclose(again.predict(hazelnut).scores, result["scores"], rtol=1e-4)


def test_native_size_is_the_first_training_image_and_tiles_follow_it(tmp_path):
    from tests.conftest import make_layout

    root = make_layout(tmp_path / "ds", n_train=3, size=(72, 100))
    model = PatchCore(image_size="native", tile={"size": 48, "overlap": 8}, progress=False)
    with pytest.raises(Exception, match="native"):
        _ = model.preprocess
    model.fit(root)
    assert model.image_size == (72, 100) and model.preprocess.output_size == (72, 100)
    assert model.tiles_per_image == 2 * 3
    pred = model.predict(root)
    assert pred.maps.shape[1:] == (72, 100)
    again = load(model.save(tmp_path / "m.indad"))
    assert again.image_size == (72, 100)
    np.testing.assert_allclose(again.predict(root).scores, pred.scores, rtol=1e-5)
