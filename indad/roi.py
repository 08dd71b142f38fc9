"""Regions of interest: where on the image the model inspects (a mask picture, or polygons)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .data.images import read_image
from .errors import InputError

RoiSource = str | os.PathLike | dict[str, Any] | np.ndarray
"""A region of interest as given: a mask picture's path (white = inspect, any size),
``{"polygons": [[[x, y], ...], ...], "size": [width, height]}`` (polygons in pixels of an image of that size),
or an array ``(h, w)``: bool, or grey levels where 128 and above inspect."""


def roi_mask(source: RoiSource) -> np.ndarray:
    """The region of interest as a boolean picture ``(h, w)``, True where the model inspects.

    A mask picture is read at its own size, white (grey 128 and above)
    inspected; polygons are drawn at their ``size``. Either is later resized (and letterboxed, cropped) as the images
    are, so it should have the camera images' aspect ratio.

    Raises
    ------
    InputError
        A missing or unreadable picture (:class:`~indad.errors.ImageReadError`),
        malformed polygons, or a region that inspects nothing.
    """
    if isinstance(source, dict):
        mask, name = _polygons_mask(source), "the ROI polygons"
    elif isinstance(source, (str, os.PathLike)):
        mask, name = np.asarray(read_image(Path(source)).convert("L")) > 127, f"ROI mask {source}"
    elif isinstance(source, np.ndarray) and source.ndim == 2:
        mask, name = (source if source.dtype == bool else source > 127), "the ROI array"
    else:
        raise InputError(f"roi must be a mask picture's path, {{polygons, size}} or an (h, w) array, got {source!r}")
    if not mask.any():
        raise InputError(f"{name} inspects nothing: it has no white (inspected) pixel")
    return mask


def _polygons_mask(source: dict[str, Any]) -> np.ndarray:
    """Polygons ``{"polygons": [[[x, y], ...], ...], "size": [width, height]}`` filled on a black picture."""
    unknown = set(source) - {"polygons", "size"}
    if unknown or "polygons" not in source or "size" not in source:
        raise InputError(
            f"roi polygons must be {{polygons: [[[x, y], ...], ...], size: [width, height]}}, got {source!r}"
        )
    size = source["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise InputError(f"roi size must be [width, height] in pixels, got {size!r}")
    picture = Image.new("L", (int(size[0]), int(size[1])))
    draw = ImageDraw.Draw(picture)
    polygons = source["polygons"]
    if not isinstance(polygons, (list, tuple)) or not polygons:
        raise InputError(f"roi polygons must be a non-empty list of polygons, got {polygons!r}")
    for i, polygon in enumerate(polygons):
        try:
            points = [(float(x), float(y)) for x, y in polygon]
        except (TypeError, ValueError):
            raise InputError(f"roi polygon {i} must be a list of [x, y] points, got {polygon!r}") from None
        if len(points) < 3:
            raise InputError(f"roi polygon {i} needs at least 3 points, got {len(points)}")
        draw.polygon(points, fill=255)
    return np.asarray(picture) > 127
