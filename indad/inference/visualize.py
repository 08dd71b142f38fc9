"""Anomaly maps as pictures: a colour heatmap, an overlay on the original image, a binary mask."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..data import Preprocess
from ..thresholds import Thresholds

PNG_LEVEL = 1
"""zlib level of the pictures: about 4x faster to write than Pillow's default 6, files about 25% larger."""


def map_to_original(anomaly_map: np.ndarray, preprocess: Preprocess, size: tuple[int, int]) -> np.ndarray:
    """An anomaly map at the network input size brought back onto the original image ``size = (width, height)``.

    The resize (stretch or letterbox) and centre crop of ``preprocess`` are
    undone; the border a crop removed, which the model never saw, scores 0.
    """
    resized = np.zeros(preprocess.resize, dtype=np.float32)
    box = preprocess.crop_box()
    if box is None:
        resized[:] = anomaly_map
    else:
        left, top, right, bottom = box
        resized[top:bottom, left:right] = anomaly_map
    left, top, right, bottom = preprocess.content_box(size)
    content = Image.fromarray(np.ascontiguousarray(resized[top:bottom, left:right]), mode="F")
    return np.asarray(content.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def heatmap_vmax(anomaly_map: np.ndarray, thresholds: Thresholds | None) -> float:
    """Where a heatmap's colours top out: twice the pixel threshold, or the map's maximum without thresholds."""
    return 2.0 * thresholds.pixel if thresholds is not None else float(np.max(anomaly_map))


def heatmap_image(anomaly_map: np.ndarray, vmax: float, colormap: str = "jet") -> Image.Image:
    """An RGB heatmap of ``anomaly_map`` scaled from 0 to ``vmax``."""
    from matplotlib import colormaps

    scaled = np.clip(anomaly_map / max(float(vmax), 1e-12), 0.0, 1.0)
    rgb = colormaps[colormap](scaled)[..., :3]
    return Image.fromarray((rgb * 255).round().astype(np.uint8), mode="RGB")


def overlay_image(
    original: Image.Image, heatmap: Image.Image, mask: np.ndarray | None = None, alpha: float = 0.45
) -> Image.Image:
    """The heatmap blended onto the original image (same size), with the mask outline in white."""
    blended = Image.blend(original.convert("RGB"), heatmap.resize(original.size, Image.Resampling.BILINEAR), alpha)
    if mask is not None and mask.any():
        from scipy import ndimage

        edge = mask & ~ndimage.binary_erosion(mask, iterations=max(1, min(mask.shape) // 200))
        arr = np.asarray(blended).copy()
        arr[edge] = 255
        blended = Image.fromarray(arr)
    return blended


def mask_image(mask: np.ndarray) -> Image.Image:
    """A binary mask as a black-and-white PNG-ready image (255 = defect)."""
    return Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
