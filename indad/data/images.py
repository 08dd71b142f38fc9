"""Reading images and masks from disk, whatever their format and mode."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageReadError

EXIF_ORIENTATION = 0x0112  # the EXIF tag saying how a camera held the picture (1: upright)
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"})


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether a path has a common image extension (and is not a hidden file)."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files of a folder, sorted by path."""
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and is_image_file(p))


def upright(im: Image.Image) -> Image.Image:
    """``im`` turned as its EXIF orientation says (a phone's "rotate 90" picture stood up); itself when upright."""
    if im.getexif().get(EXIF_ORIENTATION, 1) in (0, 1):
        return im
    return ImageOps.exif_transpose(im)


def decode_image(source: str | os.PathLike | IO[bytes], name: str | os.PathLike) -> Image.Image:
    """An image read fully from a path or file object, in its own mode (palette images as RGBA), stood upright
    as its EXIF orientation says.

    Raises :class:`ImageReadError` naming ``name``; its cause is Pillow's error
    (``UnidentifiedImageError`` when the data is not an image at all).
    """
    try:
        with Image.open(source) as im:
            im.load()
            turned = upright(im)
            if turned is not im:
                return turned if turned.mode != "P" else turned.convert("RGBA")
            return im.copy() if im.mode != "P" else im.convert("RGBA")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {name}: {exc}") from exc


def upright_size(im: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of an opened image once stood upright (from its header: nothing decoded)."""
    swapped = im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)  # the four orientations turned by 90 degrees
    return (im.height, im.width) if swapped else (im.width, im.height)


def image_size(source: str | os.PathLike | IO[bytes]) -> tuple[int, int]:
    """``(width, height)`` of an image file as :func:`decode_image` gives it (its header only is read).

    Raises :class:`OSError` (Pillow's errors) when the header cannot be read.
    """
    with Image.open(source) as im:
        return upright_size(im)


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    return decode_image(path, path)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale integer or float pixel values of any bit depth to 0..255."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return np.clip(arr.astype(np.float64) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
    return np.clip(arr.astype(np.float64) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)


def to_rgb(im: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of a PIL image of any mode (grayscale, RGBA, palette, 16-bit, float)."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return Image.fromarray(_to_uint8(np.asarray(im))).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        # Transparent pixels become black, as they would be shown on a black background.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def read_image(path: str | os.PathLike) -> Image.Image:
    """An image file as 8-bit RGB.

    Raises
    ------
    ImageReadError
        When the file is missing or not a readable image; the message names the file.
    """
    return to_rgb(_open(Path(path)))


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A ground-truth mask file as a boolean array ``(H, W)``, True where defective.

    Any mode and bit depth is accepted; pixels above half the mask's largest value
    count as defective, so 0/255, 0/1 and 16-bit masks all read correctly.
    """
    im = _open(Path(path))
    arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1) if arr.shape[-1] >= 3 else arr[..., 0]
    arr = arr.astype(np.float64)
    top = arr.max(initial=0.0)
    if top <= 0:
        return np.zeros(arr.shape, dtype=bool)
    return arr > top / 2.0
