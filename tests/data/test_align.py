"""Registration to a reference good image: a moved copy comes back, noise is refused with a warning."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from indad.data.align import IDENTITY, Aligner, grey_picture, inverse, unalign_maps
from indad.data.images import read_image
from indad.data.variation import pose_matrix, theta_of, warp
from indad.errors import InputError
from tests.helpers import shared_datasets

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
SIZE = (96, 96)


@pytest.fixture(scope="module")
def nut() -> torch.Tensor:
    """A hazelnut image at 96 px, normalised (mean = std = 0.5) ``(3, H, W)``."""
    image = read_image(shared_datasets() / "hazelnut_reduced" / "train" / "good" / "000.png").resize(SIZE)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - 0.5) / 0.5


def pixel_error(theta: torch.Tensor, moved_by: torch.Tensor) -> float:
    """The largest distance in pixels the two motions one after the other move a pixel of the image's middle."""
    full = [torch.cat([t.double(), torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)]) for t in (moved_by, theta)]
    both = full[0] @ full[1]  # sampling: aligned(q) = nut(moved_by(theta(q)))
    ys, xs = torch.meshgrid(torch.linspace(-0.6, 0.6, 7), torch.linspace(-0.6, 0.6, 7), indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten(), torch.ones(49)]).double()
    moved = both @ points
    return float(((moved[:2] - points[:2]) * SIZE[0] / 2).norm(dim=0).max())


@pytest.mark.parametrize(
    ("motion", "angle", "shift"), [("translation", 0.0, (5.0, -3.0)), ("euclidean", 3.0, (4.0, 2.5))]
)
def test_a_moved_copy_aligns_back_within_a_pixel(nut: torch.Tensor, motion: str, angle: float, shift: tuple) -> None:
    moved_by = theta_of(pose_matrix(SIZE, angle, 1.0, shift), SIZE)
    moved = warp(nut[None], moved_by[None])
    aligner = Aligner(grey_picture(nut, MEAN, STD, 96), motion)
    aligned, thetas = aligner.align(moved, MEAN, STD, ["moved.png"])
    assert pixel_error(thetas[0], moved_by) < 1.0
    middle = (slice(None), slice(16, 80), slice(16, 80))
    assert float((aligned[0] - nut)[middle].abs().mean()) < float((moved[0] - nut)[middle].abs().mean()) / 2


def test_maps_come_back_to_the_image_frame() -> None:
    theta = theta_of(pose_matrix(SIZE, 3.0, 1.0, (4.0, -2.0)), SIZE)[None]
    spot = torch.zeros(1, *SIZE)
    spot[0, 40:50, 30:40] = 1.0
    aligned_map = warp(spot[:, None], theta)[:, 0]
    back = unalign_maps(aligned_map, theta)
    assert float((back - spot)[0, 20:76, 20:76].abs().mean()) < 0.02
    assert torch.allclose(inverse(inverse(theta)), theta, atol=1e-6)


def test_noise_is_not_aligned_and_says_so(nut: torch.Tensor, caplog: pytest.LogCaptureFixture) -> None:
    noise = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (1, 3, *SIZE)).astype(np.float32))
    aligner = Aligner(grey_picture(nut, MEAN, STD, 96), "euclidean")
    with caplog.at_level(logging.WARNING, logger="indad"):
        aligned, thetas = aligner.align(noise, MEAN, STD, ["noise.png"])
    assert "noise.png cannot be aligned to the reference" in caplog.text
    assert torch.equal(thetas[0], IDENTITY)
    assert torch.allclose(aligned, noise, atol=1e-5)


def test_a_bad_reference_or_motion_is_refused() -> None:
    with pytest.raises(InputError, match="align_motion must be one of translation, euclidean"):
        Aligner(torch.zeros(16, 16), "affine")
    with pytest.raises(InputError, match="grey picture"):
        Aligner(torch.zeros(3, 16, 16))
