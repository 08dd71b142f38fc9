"""The backbone over a whole working image, chunk by chunk."""

from __future__ import annotations

import pytest
import torch

from indad.backbones import Backbone
from indad.backbones.chunked import ChunkedBackbone, chunk_starts, padded_length
from indad.errors import InputError


def test_chunks_cover_the_length_without_gaps_on_stride_multiples():
    starts = chunk_starts(2448, 256, 16)
    assert starts == [0, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2192]
    assert chunk_starts(2048, 256, 16) == list(range(0, 2048, 256))
    assert chunk_starts(256, 256, 16) == [0]
    assert padded_length(2000, 16) == 2000 and padded_length(2001, 16) == 2016
    with pytest.raises(InputError, match="does not fit"):
        chunk_starts(128, 256, 16)
    with pytest.raises(InputError, match="multiples of the stride"):
        chunk_starts(2450, 256, 16)


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return Backbone("tf_efficientnet_lite0", (8, 16))


def test_each_chunk_of_the_map_is_the_backbone_on_that_chunk(backbone):
    images = torch.randn(2, 3, 100, 150, generator=torch.Generator().manual_seed(0))
    chunked = ChunkedBackbone(backbone, (100, 150), (64, 64), batch=3)
    assert chunked.padded_size == (112, 160)
    assert chunked.origins == [(t, c) for t in (0, 48) for c in (0, 64, 96)]
    maps = chunked(images, "torch")
    assert [tuple(m.shape) for m in maps] == [(2, 40, 14, 20), (2, 112, 7, 10)]
    padded = chunked.pad(images)
    assert torch.equal(padded[..., :100, :150], images) and float(padded[..., 100:, :].abs().max()) == 0.0
    # each cell is the backbone's on the last chunk (in row-by-row order) covering it
    for m, s in zip(maps, (8, 16), strict=True):
        for r in range(m.shape[-2]):
            for c in range(m.shape[-1]):
                top = max(t for t, _ in chunked.origins if t <= r * s < t + 64)
                left = max(x for _, x in chunked.origins if x <= c * s < x + 64)
                want = expected(backbone, padded, top, left, s)[:, :, r - top // s, c - left // s]
                torch.testing.assert_close(m[:, :, r, c], want, rtol=1e-5, atol=1e-5)


_CACHE: dict = {}


def expected(backbone: Backbone, padded: torch.Tensor, top: int, left: int, stride: int) -> torch.Tensor:
    """The backbone's map at ``stride`` of the 64 px chunk of ``padded`` at ``(top, left)``."""
    key = (top, left)
    if key not in _CACHE:
        _CACHE[key] = backbone(padded[:, :, top : top + 64, left : left + 64], "torch")
    return _CACHE[key][0 if stride == 8 else 1]


def test_a_chunk_as_large_as_the_image_is_the_backbone(backbone):
    images = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    chunked = ChunkedBackbone(backbone, (96, 128), (96, 128), batch=4)
    for a, b in zip(chunked(images, "torch"), backbone(images, "torch"), strict=True):
        assert torch.equal(a, b)


def test_images_of_another_size_are_refused(backbone):
    chunked = ChunkedBackbone(backbone, (96, 128), (64, 64), batch=4)
    with pytest.raises(InputError, match="takes images of"):
        chunked(torch.zeros(1, 3, 96, 96))
