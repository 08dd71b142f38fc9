"""Resizing: stretched or letterboxed, images and masks placed alike, maps brought back to the original."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from indad.data import Preprocess
from indad.errors import ConfigError
from indad.inference import map_to_original

FIT = Preprocess((40, 60), None, (0.5,) * 3, (0.5,) * 3, "fit")


@pytest.mark.parametrize(
    ("size", "box"),
    [
        ((120, 80), (0, 0, 60, 40)),
        ((100, 100), (10, 0, 50, 40)),
        ((300, 50), (0, 15, 60, 25)),
        ((6, 4), (0, 0, 60, 40)),
    ],
)
def test_letterbox_keeps_the_aspect_ratio_centred(size, box):
    assert FIT.content_box(size) == box
    assert Preprocess((40, 60), None, (0.5,) * 3, (0.5,) * 3).content_box(size) == (0, 0, 60, 40)


def test_images_and_masks_are_placed_alike_on_black():
    image = Image.new("RGB", (100, 100), (255, 255, 255))
    x = FIT.image(image)
    assert x.shape == (3, 40, 60)
    assert (x[:, :, :10] == -1).all() and (x[:, :, 50:] == -1).all()  # black bars, normalised
    assert (x[:, :, 10:50] == 1).all()
    mask = FIT.mask(np.ones((100, 100), dtype=bool)).numpy()
    assert mask[:, 10:50].all() and not mask[:, :10].any() and not mask[:, 50:].any()


def test_maps_come_back_onto_the_original_without_the_bars():
    amap = np.zeros((40, 60), dtype=np.float32)
    amap[:, 10:50] = 1.0
    back = map_to_original(amap, FIT, (100, 100))
    assert back.shape == (100, 100) and np.allclose(back, 1.0)


def test_unknown_resize_mode_is_refused():
    with pytest.raises(ConfigError, match="stretch, fit"):
        Preprocess((40, 60), None, (0.5,) * 3, (0.5,) * 3, "squash")
    assert Preprocess.from_dict(FIT.to_dict()) == FIT
