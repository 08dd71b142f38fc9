"""The expected variation: checked settings, seeded changes, each change doing what it says."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from indad.data.images import read_image
from indad.data.photometric import TARGET_MEAN, TARGET_STD, Standardized, standardize
from indad.data.variation import Variation, image_seed, jpeg_roundtrip, pose_matrix, theta_of, warp
from indad.errors import InputError
from tests.helpers import shared_datasets


@pytest.fixture(scope="module")
def nut() -> torch.Tensor:
    """A hazelnut image at 96 px, 0..1 values ``(3, H, W)``."""
    image = read_image(shared_datasets() / "hazelnut_reduced" / "train" / "good" / "000.png").resize((96, 96))
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)


def test_parse_keeps_the_changes_set_and_off_is_none() -> None:
    spec = Variation.parse({"brightness": 0.15, "rotate": 3, "jpeg": 70, "blur": None})
    assert spec is not None and spec.to_dict() == {"brightness": 0.15, "rotate": 3.0, "jpeg": 70}
    assert Variation.parse(spec.to_dict()) == spec
    assert Variation.parse(None) is None and Variation.parse({}) is None and Variation.parse({"noise": 0}) is None


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"brightnes": 0.1}, "unknown change 'brightnes'"),
        ({"brightness": 1.0}, "variation.brightness must be in [0, 1)"),
        ({"rotate": -1}, "variation.rotate must be in [0, 45]"),
        ({"jpeg": 70.5}, "variation.jpeg must be a number"),
        ({"jpeg": 0}, "variation.jpeg must be in [1, 100]"),
        ({"noise": "a lot"}, "variation.noise must be a number"),
        ({"gamma": float("nan")}, "variation.gamma must be a number"),
        ("brightness", "must be a mapping"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(value: object, words: str) -> None:
    with pytest.raises(InputError, match=rf"{words[:20].replace('[', '.').replace('(', '.')}"):
        Variation.parse(value)  # type: ignore[arg-type]


def test_changes_are_deterministic_by_seed(nut: torch.Tensor) -> None:
    spec = Variation(brightness=0.2, rotate=3, shift=4, scale=0.03, blur=1, noise=0.02, jpeg=70)
    a, b, c = spec.apply(nut, 1), spec.apply(nut, 1), spec.apply(nut, 2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert image_seed(0, "a.png", 1) == image_seed(0, "a.png", 1) != image_seed(0, "a.png", 2)


def test_brightness_scales_the_mean(nut: torch.Tensor) -> None:
    ratios = [float(Variation(brightness=0.15).apply(nut, s).mean() / nut.mean()) for s in range(20)]
    assert 0.85 - 1e-3 <= min(ratios) < 0.95 and 1.05 < max(ratios) <= 1.15 + 1e-3


def test_contrast_and_gamma_change_the_spread_and_the_mid_tones(nut: torch.Tensor) -> None:
    spreads = [float(Variation(contrast=0.3).apply(nut, s).std() / nut.std()) for s in range(20)]
    assert min(spreads) < 0.9 and max(spreads) > 1.1
    means = [float(Variation(gamma=0.25).apply(nut, s).mean()) for s in range(20)]
    assert min(means) < float(nut.mean()) < max(means)


def test_rotation_fills_the_corners_from_the_image() -> None:
    white = torch.full((3, 64, 80), 0.9)
    turned = Variation(rotate=10, shift=8, scale=0.1).apply(white, 3)
    assert float(turned.min()) > 0.89  # no black corners: mirrored borders


def test_rotation_moves_the_image(nut: torch.Tensor) -> None:
    moves = [float((Variation(rotate=5).apply(nut, s) - nut).abs().mean()) for s in range(10)]
    assert max(moves) > 0.005
    quarter = warp(nut[None], theta_of(pose_matrix((96, 96), 90.0), (96, 96))[None])[0]
    assert torch.allclose(quarter, nut.transpose(1, 2).flip(2), atol=1e-4)  # clockwise on screen


def test_blur_smooths_and_noise_adds_grain(nut: torch.Tensor) -> None:
    def roughness(x: torch.Tensor) -> float:
        return float((x[:, :, 1:] - x[:, :, :-1]).abs().mean())

    assert roughness(Variation(blur=2).apply(nut, 5)) < roughness(nut)
    assert roughness(Variation(noise=0.1).apply(nut, 5)) > roughness(nut)


def test_jpeg_is_a_real_encode_decode(nut: torch.Tensor) -> None:
    array = (nut.permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=70)
    expected = np.asarray(Image.open(buffer), dtype=np.float32) / 255
    assert np.array_equal(jpeg_roundtrip(nut, 70).permute(1, 2, 0).numpy(), expected)
    changed = Variation(jpeg=70).apply(nut, 0)
    assert 0 < float((changed - nut).abs().mean()) < 0.05


def test_standardisation_takes_out_a_change_of_brightness(nut: torch.Tensor) -> None:
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    normalised = ((nut - 0.5) / 0.5)[None]
    darker = ((nut * 0.8 - 0.5) / 0.5)[None]
    a, b = standardize(normalised, mean, std), standardize(darker, mean, std)
    assert torch.allclose(a, b, atol=1e-4)
    raw = a * 0.5 + 0.5
    assert torch.allclose(raw.mean(dim=(2, 3))[0], torch.tensor(TARGET_MEAN), atol=1e-4)
    assert torch.allclose(raw.std(dim=(2, 3), unbiased=False)[0], torch.tensor(TARGET_STD), atol=1e-4)

    class Echo(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x.amax(dim=(1, 2, 3)), x[:, 0]

    _, maps = Standardized(Echo(), mean, std)(darker)
    assert torch.allclose(maps, a[:, 0], atol=1e-5)
