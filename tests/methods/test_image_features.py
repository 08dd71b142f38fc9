"""PatchCore with ``tile_features="image"``: the backbone over the working image in chunks, one map (issue 27)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from indad import load
from indad.errors import InputError
from indad.methods import PatchCore
from indad.methods.anomaly_map import AnomalyMapGenerator


def _train(hazelnut, n=8):
    return sorted((hazelnut / "train" / "good").iterdir())[:n]


def test_one_chunk_as_large_as_the_image_is_the_untiled_model(hazelnut):
    common = {"image_size": 96, "progress": False, "search": "exact", "backbone_runtime": "torch"}
    untiled = PatchCore(**common).fit(_train(hazelnut))
    chunked = PatchCore(tile=96, tile_features="image", **common).fit(_train(hazelnut))
    assert torch.equal(untiled.memory_bank, chunked.memory_bank)
    a, b = untiled.predict(hazelnut), chunked.predict(hazelnut)
    np.testing.assert_allclose(b.maps, a.maps, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(b.scores, a.scores, rtol=1e-6)


def test_chunked_model_fits_scores_and_reloads(hazelnut, tmp_path):
    params = {"image_size": (100, 136), "tile": {"size": 64, "overlap": 16}, "resize": "fit", "progress": False}
    model = PatchCore(tile_features="image", **params).fit(_train(hazelnut, 10))
    tiles = PatchCore(**params).fit(_train(hazelnut, 10))
    assert model.splits_tiles is False and tiles.splits_tiles is True
    # 112 x 144 padded, 14 x 18 patches an image, against 6 tiles x 64 patches (overlaps counted twice)
    assert model.memory_bank.shape[0] == round(0.01 * 10 * 14 * 18)
    assert tiles.memory_bank.shape[0] == round(0.01 * 10 * 6 * 8 * 8)
    result = model.evaluate(hazelnut, keep_maps=True)
    assert result["maps"].shape == (10, 100, 136)
    np.testing.assert_allclose(result["scores"], result["maps"].max(axis=(1, 2)), rtol=1e-6)
    assert result["image_auroc"] >= 0.7 and result["pixel_auroc"] >= 0.85  # hazelnut's defects are found
    again = load(model.save(tmp_path / "m.indad"))
    assert again.tile_features == "image" and again.splits_tiles is False
    np.testing.assert_allclose(again.predict(hazelnut).scores, result["scores"], rtol=1e-4)
    # the ONNX graph chunks the image as the model does (exact search there: within the HNSW's approximation)
    from indad.data import read_image
    from indad.export.graph import OnnxScorer, export_model

    files = sorted((hazelnut / "test").rglob("*.png"))[:2]
    images = torch.stack([model.preprocess.image(read_image(f)) for f in files])
    scores, maps = OnnxScorer(export_model(model, tmp_path / "m.onnx"))(images)
    want = model.predict(images)
    assert maps.shape == (2, 100, 136)
    np.testing.assert_allclose(scores, want.scores, rtol=1e-3)
    np.testing.assert_allclose(maps, want.maps, rtol=1e-3, atol=1e-3)


def test_max_bank_caps_the_bank_and_its_pool(hazelnut):
    params = {"image_size": 96, "progress": False, "f_coreset": 0.1}
    capped = PatchCore(max_bank=20, **params).fit(_train(hazelnut))
    assert capped.memory_bank.shape == (20, 152)
    assert PatchCore(**params).fit(_train(hazelnut)).memory_bank.shape[0] == round(0.1 * 8 * 144)
    with pytest.raises(InputError, match="tile_features"):
        PatchCore(tile_features="chunks")


def test_a_map_cut_to_an_output_size_is_the_top_left_of_the_whole_map():
    scores = torch.rand(2, 14, 18, generator=torch.Generator().manual_seed(0))
    whole = AnomalyMapGenerator((112, 144), 4.0)(scores)
    cut = AnomalyMapGenerator((112, 144), 4.0, output_size=(100, 136))(scores)
    assert cut.shape == (2, 100, 136)
    torch.testing.assert_close(cut, whole[:, :100, :136])
