"""Preprocessing: resize (stretched or letterboxed), optional centre crop, the backbone's own normalisation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError


def as_size(value: int | tuple[int, int] | list[int] | None, what: str) -> tuple[int, int] | None:
    """``256`` or ``(H, W)`` as ``(H, W)``; None stays None."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        size = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (int, np.integer)) for v in value):
        size = (int(value[0]), int(value[1]))
    else:
        raise ConfigError(f"{what} must be an int or a pair (height, width), got {value!r}")
    if min(size) < 16:
        raise ConfigError(f"{what} must be at least 16 pixels, got {value!r}")
    return size


RESIZE_MODES = ("stretch", "fit")
"""``stretch``: the image fills the whole size (aspect ratio changed); ``fit``: scaled to fit inside it, aspect ratio
kept, centred on a black canvas (letterbox)."""


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a network input.

    Parameters
    ----------
    resize:
        ``(height, width)`` every image is resized to (bicubic; masks nearest).
    crop:
        Optional ``(height, width)`` centre crop applied after resizing.
    mean, std:
        Per-channel normalisation of the backbone, on 0..1 pixel values.
    mode:
        How an image of another aspect ratio meets ``resize``: one of :data:`RESIZE_MODES`.
    """

    resize: tuple[int, int]
    crop: tuple[int, int] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    mode: str = "stretch"

    def __post_init__(self) -> None:
        if self.crop is not None and (self.crop[0] > self.resize[0] or self.crop[1] > self.resize[1]):
            raise ConfigError(f"crop size {self.crop} is larger than the resize {self.resize}")
        if self.mode not in RESIZE_MODES:
            raise ConfigError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.mode!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocess:
        """The inverse of :meth:`to_dict`."""
        crop = values.get("crop")
        return cls(
            tuple(values["resize"]),
            tuple(crop) if crop else None,
            tuple(values["mean"]),
            tuple(values["std"]),
            values.get("mode", "stretch"),
        )

    @property
    def output_size(self) -> tuple[int, int]:
        """``(height, width)`` of the tensors this produces."""
        return self.crop or self.resize

    def crop_box(self) -> tuple[int, int, int, int] | None:
        """``(left, top, right, bottom)`` of the centre crop in the resized image, or None."""
        if self.crop is None:
            return None
        (h, w), (ch, cw) = self.resize, self.crop
        top, left = (h - ch) // 2, (w - cw) // 2
        return left, top, left + cw, top + ch

    def content_box(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` an image of ``size = (width, height)`` fills in the resized image.

        The whole of it when stretched; the centred, aspect-preserving box when letterboxed (``mode="fit"``).
        """
        height, width = self.resize
        if self.mode == "stretch":
            return 0, 0, width, height
        scale = min(width / size[0], height / size[1])
        w, h = max(1, min(width, round(size[0] * scale))), max(1, min(height, round(size[1] * scale)))
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def _resized(self, im: Image.Image, resample: Image.Resampling) -> Image.Image:
        """``im`` resized (stretched or letterboxed on black) to :attr:`resize`, then centre-cropped."""
        left, top, right, bottom = self.content_box(im.size)
        scaled = im.resize((right - left, bottom - top), resample)
        if scaled.size != (self.resize[1], self.resize[0]):
            canvas = Image.new(im.mode, (self.resize[1], self.resize[0]))
            canvas.paste(scaled, (left, top))
            scaled = canvas
        box = self.crop_box()
        return scaled if box is None else scaled.crop(box)

    def image(self, im: Image.Image) -> torch.Tensor:
        """An RGB PIL image as a normalised float tensor ``(3, H, W)``."""
        im = self._resized(im, Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        return (x - mean) / std

    def mask(self, mask: np.ndarray) -> torch.Tensor:
        """A boolean mask ``(h, w)`` at an image's original size as a bool tensor ``(H, W)``, placed as the image."""
        im = self._resized(Image.fromarray(mask.astype(np.uint8) * 255), Image.Resampling.NEAREST)
        return torch.from_numpy(np.asarray(im) > 127)

    def to_dict(self) -> dict:
        """Plain values, for results files and configs."""
        return {
            "resize": list(self.resize),
            "crop": list(self.crop) if self.crop else None,
            "mean": list(self.mean),
            "std": list(self.std),
            "mode": self.mode,
        }
