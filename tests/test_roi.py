"""Regions of interest: read, drawn, applied to the maps, kept in model files and exports."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from indad import load
from indad.data import read_image
from indad.errors import ImageReadError, InputError
from indad.methods import PatchCore
from indad.roi import roi_mask
from tests.helpers import save_image


def test_polygons_and_pictures_give_the_same_mask(tmp_path):
    polygons = {"polygons": [[[10, 5], [30, 5], [30, 20], [10, 20]]], "size": [40, 30]}
    drawn = roi_mask(polygons)
    assert drawn.shape == (30, 40) and drawn[5:21, 10:31].all() and drawn.sum() == 16 * 21
    picture = np.zeros((30, 40), dtype=np.uint8)
    picture[drawn] = 255
    assert np.array_equal(roi_mask(save_image(tmp_path / "roi.png", picture)), drawn)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"polygons": [[[0, 0], [5, 5]]], "size": [10, 10]}, "at least 3 points"),
        ({"polygons": [[[0, 0], [5, 5], [0, 5]]]}, "must be {polygons"),
        ({"polygons": [], "size": [10, 10]}, "non-empty"),
        ({"polygons": [[["a", 0], [5, 5], [0, 5]]], "size": [10, 10]}, "list of \\[x, y\\] points"),
        ({"polygons": [[[0, 0], [5, 5], [0, 5]]], "size": [10]}, "width, height"),
        (3, "mask picture's path"),
    ],
)
def test_bad_polygons_are_refused(source, message):
    with pytest.raises(InputError, match=message):
        roi_mask(source)


def test_missing_or_empty_pictures_are_refused(tmp_path):
    with pytest.raises(ImageReadError, match="nowhere.png"):
        PatchCore(roi=tmp_path / "nowhere.png")
    black = save_image(tmp_path / "black.png", np.full((8, 8), 3, dtype=np.uint8))  # dark grey: not white anywhere
    with pytest.raises(InputError, match="black.png inspects nothing"):
        roi_mask(black)
    with pytest.raises(InputError, match="ROI array inspects nothing"):
        roi_mask(np.zeros((8, 8), dtype=bool))


def test_an_array_is_a_region_too():
    grey = np.zeros((30, 40), dtype=np.uint8)
    grey[:, :20] = 200
    assert np.array_equal(roi_mask(grey), grey > 127) and np.array_equal(roi_mask(grey > 0), grey > 0)
    model = PatchCore(image_size=(30, 40), roi=grey > 0)
    assert model.roi_mask is not None and model.roi_mask[:, :20].all() and not model.roi_mask[:, 20:].any()
    assert model.hparams()["roi"] == "<array 30x40>"


def test_nothing_outside_the_region_scores_and_the_region_survives_save_load_and_export(hazelnut, tmp_path):
    from indad.export.graph import OnnxScorer, export_model

    train = sorted((hazelnut / "train" / "good").iterdir())[:10]
    picture = np.zeros((256, 256), dtype=np.uint8)
    picture[:, :128] = 255  # inspect the left half only (hazelnut's pictures are 256 x 256)
    roi = save_image(tmp_path / "roi.png", picture)
    common = {"image_size": 96, "progress": False, "backbone_runtime": "torch", "search": "exact"}
    plain = PatchCore(**common).fit(train, holdout=0.2)
    model = PatchCore(roi=roi, **common).fit(train, holdout=0.2)
    masked, full = model.predict(hazelnut), plain.predict(hazelnut)
    assert (masked.maps[:, :, 48:] == 0).all()
    np.testing.assert_allclose(masked.maps[:, :, :48], full.maps[:, :, :48], rtol=1e-5)
    np.testing.assert_allclose(masked.scores, masked.maps.max(axis=(1, 2)))
    assert all(r.bbox[2] <= 48 for regions in masked.regions() for r in regions)

    saved = model.save(tmp_path / "m.indad")
    roi.unlink()  # the model file holds the region: its picture is no longer needed
    again = load(saved)
    assert again.roi_mask is not None and torch.equal(again.roi_mask.cpu(), model.roi_mask.cpu())
    np.testing.assert_allclose(again.predict(hazelnut).scores, masked.scores, rtol=1e-5)

    scorer = OnnxScorer(export_model(model, tmp_path / "m.onnx"))
    batch = torch.stack([model.preprocess.image(read_image(p)) for p in train[:2]])
    scores, maps = scorer(batch)
    assert (maps[:, :, 48:] == 0).all()
    np.testing.assert_allclose(scores, model.score_batch(batch)[0], rtol=1e-3)
