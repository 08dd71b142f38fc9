"""The scores of a set of images, and what follows from them with the model's thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import NotCalibratedError
from ..regions import Region, find_regions
from ..thresholds import Thresholds, is_defective


@dataclass
class Prediction:
    """Scores of a set of images.

    Attributes
    ----------
    scores:
        ``(N,)`` image anomaly scores (higher is more anomalous).
    maps:
        ``(N, H, W)`` pixel anomaly maps at the working size (``image_size``, or its crop).
    paths:
        Source of each image (file path, or ``<image i>`` for in-memory images).
    thresholds:
        The model's thresholds, when it has them.
    """

    scores: np.ndarray
    maps: np.ndarray
    paths: list[str] = field(default_factory=list)
    thresholds: Thresholds | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def _required_thresholds(self) -> Thresholds:
        if self.thresholds is None:
            raise NotCalibratedError("the model has no thresholds: fit(..., holdout=0.1) or calibrate() first")
        return self.thresholds

    @property
    def normalized_scores(self) -> np.ndarray:
        """``(N,)`` scores divided by the image threshold: 1.0 at the threshold."""
        return self.scores / self._required_thresholds().image

    @property
    def is_defective(self) -> np.ndarray:
        """``(N,)`` bool: score at or above the image threshold."""
        return is_defective(self.scores, self._required_thresholds().image)

    @property
    def masks(self) -> np.ndarray:
        """``(N, H, W)`` bool: anomaly map at or above the pixel threshold."""
        return is_defective(self.maps, self._required_thresholds().pixel)

    def regions(self, min_area: int = 0) -> list[list[Region]]:
        """Per image, its defect regions: connected parts of :attr:`masks` of at least ``min_area`` pixels.

        Coordinates and areas are in pixels of the maps (the working size);
        ``indad predict`` reports them in original-image pixels.
        """
        pixel = self._required_thresholds().pixel
        return [find_regions(m, pixel, min_area) for m in self.maps]
