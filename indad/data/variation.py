"""Expected variation of a line: random, seeded changes of good images (lighting, pose, optics, encoding).

A :class:`Variation` says how much each change may vary, e.g. ``{"brightness": 0.15, "rotate": 3, "jpeg": 70}``;
:meth:`Variation.apply` draws one change of each kind set, from a seed, and applies them to an image of 0..1
values. Pose changes (rotation, shift, scale) fill the borders from the image (mirrored), never black. Used at
fit time to show the model augmented good images (:mod:`indad.methods.robust`), and by
``benchmarks/robustness.py`` to change test images.

What each key means (every one optional; a change is drawn uniformly within its range):

=============  =======================================================================  ==============
key            change                                                                   allowed values
=============  =======================================================================  ==============
brightness     pixel values times a factor in ``[1 - b, 1 + b]``                        ``[0, 1)``
contrast       distance to the image's mean grey times a factor in ``[1 - c, 1 + c]``   ``[0, 1)``
gamma          values to the power ``g`` with ``g`` in ``[1 / (1 + v), 1 + v]``         ``[0, 2]``
rotate         rotation about the centre by up to this many degrees either way          ``[0, 45]``
shift          translation by up to this many pixels of the working image, each axis    ``[0, 256]``
scale          zoom by a factor in ``[1 - s, 1 + s]``                                   ``[0, 0.5]``
blur           Gaussian blur of a sigma in ``[0, b]`` pixels                            ``[0, 10]``
noise          Gaussian sensor noise of a standard deviation in ``[0, n]`` (0..1 units) ``[0, 0.5]``
jpeg           a real JPEG encode / decode (Pillow) at a quality in ``[q, max(q, 95)]``  ``1..100``
=============  =======================================================================  ==============
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError

BOUNDS: dict[str, tuple[float, float, bool]] = {
    "brightness": (0.0, 1.0, True),
    "contrast": (0.0, 1.0, True),
    "gamma": (0.0, 2.0, False),
    "rotate": (0.0, 45.0, False),
    "shift": (0.0, 256.0, False),
    "scale": (0.0, 0.5, False),
    "blur": (0.0, 10.0, False),
    "noise": (0.0, 0.5, False),
    "jpeg": (1.0, 100.0, False),
}
"""Each key's ``(low, high, high_open)``: the values :meth:`Variation.parse` accepts (``jpeg``: an integer)."""


@dataclass(frozen=True)
class Variation:
    """How much each change may vary (0 or None: that change is off); see the module's docstring."""

    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0
    rotate: float = 0.0
    shift: float = 0.0
    scale: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    jpeg: int | None = None

    @classmethod
    def parse(cls, value: Mapping[str, Any] | Variation | None, what: str = "variation") -> Variation | None:
        """A variation from a mapping (a config's ``variation:``); None for None or an empty mapping.

        Raises :class:`~indad.errors.InputError` naming the key of an unknown change or a bad value.
        """
        if value is None or isinstance(value, Variation):
            return value
        if not isinstance(value, Mapping):
            raise InputError(f"{what} must be a mapping of changes to amounts (e.g. brightness: 0.15), got {value!r}")
        checked: dict[str, Any] = {}
        for key, amount in value.items():
            if key not in BOUNDS:
                raise InputError(f"{what}: unknown change {key!r}; known: {', '.join(BOUNDS)}")
            if amount is None:
                continue
            low, high, high_open = BOUNDS[key]
            try:
                if isinstance(amount, bool) or not math.isfinite(float(amount)):
                    raise ValueError
                number = float(amount)
                if key == "jpeg" and number != int(number):
                    raise ValueError
            except (TypeError, ValueError):
                raise InputError(f"{what}.{key} must be a number, got {amount!r}") from None
            if number < low or number > high or (high_open and number >= high):
                raise InputError(f"{what}.{key} must be in [{low:g}, {high:g}{')' if high_open else ']'}, got {amount}")
            checked[key] = int(number) if key == "jpeg" else number
        spec = cls(**checked)
        return None if spec.is_off else spec

    @property
    def is_off(self) -> bool:
        """Whether no change is set."""
        return not any(self.to_dict().values())

    def to_dict(self) -> dict[str, float | int]:
        """The changes set, as plain data (the inverse of :meth:`parse`)."""
        return {k: v for k, v in asdict(self).items() if v}

    def apply(self, image: torch.Tensor, seed: int) -> torch.Tensor:
        """One random change of ``image`` (``(3, H, W)``, 0..1 values), the same for the same seed."""
        g = torch.Generator().manual_seed(int(seed) % 2**63)
        x = image.float()
        if self.rotate or self.shift or self.scale:
            h, w = x.shape[-2:]
            angle = _uniform(g, -self.rotate, self.rotate)
            zoom = _uniform(g, 1 - self.scale, 1 + self.scale)
            dx, dy = _uniform(g, -self.shift, self.shift), _uniform(g, -self.shift, self.shift)
            x = warp(x[None], theta_of(pose_matrix((h, w), angle, zoom, (dx, dy)), (h, w))[None])[0]
        if self.brightness:
            x = x * _uniform(g, 1 - self.brightness, 1 + self.brightness)
        if self.contrast:
            mean = x.mean()
            x = (x - mean) * _uniform(g, 1 - self.contrast, 1 + self.contrast) + mean
        if self.gamma:
            bound = math.log1p(self.gamma)
            x = x.clamp(0, 1) ** math.exp(_uniform(g, -bound, bound))
        if self.blur:
            x = gaussian_blur(x[None], _uniform(g, 0.0, self.blur))[0]
        if self.noise:
            sigma = _uniform(g, 0.0, self.noise)
            x = x + sigma * torch.randn(x.shape, generator=g).to(x.device)
        x = x.clamp(0, 1)
        if self.jpeg is not None:
            quality = int(torch.randint(self.jpeg, max(self.jpeg, 95) + 1, (), generator=g))
            x = jpeg_roundtrip(x, quality)
        return x


def image_seed(seed: int, key: str, copy: int) -> int:
    """A stable seed for copy ``copy`` of the image named ``key`` (its path) under the model's ``seed``."""
    return zlib.crc32(f"{seed}:{key}:{copy}".encode())


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand((), generator=g))


def pose_matrix(
    size: tuple[int, int], angle: float, zoom: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """The ``3x3`` pixel-coordinate map from an output pixel to where it is read in the input.

    The output is the input rotated by ``angle`` degrees (clockwise on screen) about its centre, zoomed by
    ``zoom`` and moved by ``shift = (dx, dy)`` pixels.
    """
    h, w = size
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a = math.radians(angle)
    c, s = math.cos(a) / zoom, math.sin(a) / zoom
    # q = centre + R(angle) Z (p - centre) + shift  =>  p = centre + Z^-1 R(-angle) (q - centre - shift)
    rot = np.array([[c, s], [-s, c]])
    centre = np.array([cx, cy])
    offset = centre - rot @ (centre + np.asarray(shift, dtype=float))
    return np.array([[rot[0, 0], rot[0, 1], offset[0]], [rot[1, 0], rot[1, 1], offset[1]], [0.0, 0.0, 1.0]])


def theta_of(matrix: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """A pixel-coordinate ``3x3`` (or ``2x3``) sampling map as the ``2x3`` normalised ``theta`` of ``affine_grid``.

    Normalised coordinates (``align_corners=False``) span the image's edges: the same ``theta`` is the same
    motion at any resolution of the image.
    """
    h, w = size
    m = np.vstack([np.asarray(matrix, dtype=float)[:2], [0.0, 0.0, 1.0]])
    to_norm = np.array([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]])
    theta = to_norm @ m @ np.linalg.inv(to_norm)
    return torch.from_numpy(theta[:2]).float()


def warp(images: torch.Tensor, theta: torch.Tensor, padding: str = "reflection") -> torch.Tensor:
    """``images`` ``(B, C, H, W)`` resampled (bilinear) by ``theta`` ``(B, 2, 3)``; borders mirrored by default."""
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """``images`` ``(B, C, H, W)`` blurred by a Gaussian of ``sigma`` pixels (borders mirrored)."""
    radius = min(math.ceil(3 * sigma), min(images.shape[-2:]) - 1)
    if sigma <= 0 or radius < 1:
        return images
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(images.dtype)
    c = images.shape[1]
    x = F.pad(images, (radius, radius, 0, 0), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.pad(x, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(x, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def jpeg_roundtrip(image: torch.Tensor, quality: int) -> torch.Tensor:
    """``image`` (``(3, H, W)``, 0..1) encoded as JPEG at ``quality`` by Pillow and decoded again."""
    array = (image.detach().cpu().permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(decoded).permute(2, 0, 1).to(image.device)
