"""Defect regions: the connected parts of an anomaly map at or above the pixel threshold."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .errors import InputError
from .thresholds import is_defective


@dataclass(frozen=True)
class Region:
    """One connected region of anomalous pixels (8-connected), in the map's pixel coordinates.

    Attributes
    ----------
    area:
        Pixels in the region.
    area_share:
        ``area`` as a share of the whole map.
    bbox:
        ``(x0, y0, x1, y1)``: the first and one past the last column and row.
    centroid:
        ``(x, y)``: the mean column and row of its pixels.
    peak, mean:
        The largest and the mean anomaly score over its pixels.
    """

    area: int
    area_share: float
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    peak: float
    mean: float

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for JSON)."""
        return asdict(self)


def find_regions(anomaly_map: np.ndarray, threshold: float, min_area: int = 0) -> list[Region]:
    """The regions of ``anomaly_map`` ``(H, W)`` at or above ``threshold``, largest peak first.

    Regions of fewer than ``min_area`` pixels are left out.
    """
    if anomaly_map.ndim != 2:
        raise InputError(f"an anomaly map is (H, W), got shape {anomaly_map.shape}")
    labels, count = ndimage.label(is_defective(anomaly_map, threshold), structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return []
    index = np.arange(1, count + 1)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    peaks = ndimage.maximum(anomaly_map, labels, index)
    means = ndimage.mean(anomaly_map, labels, index)
    centres = ndimage.center_of_mass(np.ones_like(labels), labels, index)
    regions = [
        Region(
            area=int(area),
            area_share=float(area) / anomaly_map.size,
            bbox=(int(box[1].start), int(box[0].start), int(box[1].stop), int(box[0].stop)),
            centroid=(float(centre[1]), float(centre[0])),
            peak=float(peak),
            mean=float(mean),
        )
        for area, box, centre, peak, mean in zip(
            areas, ndimage.find_objects(labels), centres, peaks, means, strict=True
        )
        if area >= min_area
    ]
    return sorted(regions, key=lambda r: -r.peak)
