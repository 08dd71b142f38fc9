"""Tiles of the working image: where they start, cutting and stitching, and tiled models against untiled ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from indad import load
from indad.data.tiles import TileGrid, Tiling
from indad.errors import NotFittedError
from indad.methods import SPADE, PaDiM, PatchCore
from indad.methods.whole_image import WholeImageModule


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
    assert again.tiling == model.tiling and again.preprocess == model.preprocess
    np.testing.assert_allclose(again.predict(hazelnut).scores, result["scores"], rtol=1e-4)


def test_native_size_is_the_first_training_image_and_tiles_follow_it(tmp_path):
    from tests.helpers import make_layout

    root = make_layout(tmp_path / "ds", n_train=3, size=(72, 100))
    model = PatchCore(image_size="native", tile={"size": 48, "overlap": 8}, progress=False)
    with pytest.raises(NotFittedError, match="native"):
        _ = model.preprocess
    model.fit(root)
    assert model.working_size == (72, 100) and model.preprocess.output_size == (72, 100)
    assert model.tiles_per_image == 2 * 3
    pred = model.predict(root)
    assert pred.maps.shape[1:] == (72, 100)
    again = load(model.save(tmp_path / "m.indad"))
    assert again.image_size == [72, 100] and again.working_size == (72, 100)
    np.testing.assert_allclose(again.predict(root).scores, pred.scores, rtol=1e-5)


def test_a_tiled_export_scores_as_the_model_a_few_images_per_run(hazelnut, tmp_path):
    from indad.data import read_image
    from indad.export.graph import OnnxScorer, export_model

    train = sorted((hazelnut / "train" / "good").iterdir())[:6]
    model = PaDiM(image_size=(96, 128), tile={"size": 64, "overlap": 16}, batch_size=12, progress=False).fit(train)
    scorer = OnnxScorer(export_model(model, tmp_path / "tiled.onnx"))
    assert scorer.images_per_run == 2  # 12 tiles a run: two images of 6 tiles
    batch = torch.stack([model.preprocess.image(read_image(p)) for p in train[:5]])
    scores, maps = scorer(batch)
    expected_scores, expected_maps = model.score_batch(batch)
    assert maps.shape == (5, 96, 128)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-3)
    np.testing.assert_allclose(maps, expected_maps, rtol=1e-3, atol=1e-3 * float(expected_maps.max()))
