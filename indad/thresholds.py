"""Decision thresholds: from good images only, or F1-optimal on a labelled validation set."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Protocol, overload

import numpy as np

from .errors import InputError
from .metrics import f1_max


@overload
def is_defective(scores: float | np.floating, threshold: float) -> bool: ...
@overload
def is_defective(scores: np.ndarray, threshold: float) -> np.ndarray: ...
def is_defective(scores: np.ndarray | float | np.floating, threshold: float) -> np.ndarray | bool:
    """Whether scores (image scores, or anomaly-map pixels) are at or above ``threshold``: indad's decision rule.

    Returns a bool array shaped like ``scores``, or a bool for a single score.
    """
    decided = np.greater_equal(scores, threshold)
    return bool(decided) if np.ndim(decided) == 0 else decided


def decision_label(score: float, threshold: float) -> str:
    """``"defective"`` for a score at or above ``threshold``, else ``"good"``."""
    return "defective" if is_defective(score, threshold) else "good"


DECISION_RULES = ("score", "regions")


class HasArea(Protocol):
    """A defect region (:class:`~indad.regions.Region`), as far as decisions go: its area in pixels."""

    @property
    def area(self) -> int: ...


@dataclass(frozen=True)
class Decision:
    """How a scored image is judged, and which of its defect regions count.

    Attributes
    ----------
    by:
        ``"score"``: defective when the image score is at or above the image
        threshold; ``"regions"``: defective when any defect region (connected
        pixels at or above the pixel threshold) of at least ``min_area`` pixels remains.
    min_area:
        Defect regions smaller than this many pixels are left out. ``indad predict``,
        ``serve`` and ``watch`` find regions on the map at the original image's
        size, so there it counts original-image pixels; :meth:`Prediction.regions
        <indad.methods.base.Prediction.regions>` counts pixels of the working size.
    """

    by: str = "score"
    min_area: int = 0

    def __post_init__(self) -> None:
        if self.by not in DECISION_RULES:
            raise InputError(f"decision must be one of {', '.join(DECISION_RULES)}, got {self.by!r}")
        if self.min_area < 0:
            raise InputError(f"min_area must be >= 0, got {self.min_area}")

    def label(self, score: float, regions: Iterable[HasArea], thresholds: Thresholds) -> str:
        """``"defective"`` or ``"good"`` for an image of this score and these defect regions.

        By regions, only those of at least ``min_area`` pixels count.
        """
        if self.by == "regions":
            return "defective" if any(r.area >= self.min_area for r in regions) else "good"
        return decision_label(score, thresholds.image)


DEFAULT_DECISION = Decision()
"""By the image score, every region reported."""


@dataclass(frozen=True)
class Thresholds:
    """An image threshold and a pixel threshold, and how they were set.

    A score ``>=`` its threshold is defective; a normalised score is the score
    divided by its threshold, so 1.0 sits at the threshold.

    Attributes
    ----------
    image:
        Image score threshold.
    pixel:
        Anomaly map threshold: pixels at or above it form the binary mask.
    rule:
        ``"good_quantile"`` or ``"f1_max"``.
    quantile:
        The quantile of the good-quantile rule (None for F1).
    n_images:
        Images the thresholds were computed from.
    """

    image: float
    pixel: float
    rule: str
    quantile: float | None
    n_images: int

    def to_dict(self) -> dict:
        """Plain values (for model files and results)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Thresholds:
        """The inverse of :meth:`to_dict`."""
        return cls(
            float(values["image"]),
            float(values["pixel"]),
            str(values["rule"]),
            None if values.get("quantile") is None else float(values["quantile"]),
            int(values["n_images"]),
        )


def good_quantile_thresholds(scores: np.ndarray, maps: np.ndarray, quantile: float = 0.99) -> Thresholds:
    """Thresholds from defect-free images alone.

    The image threshold is the ``quantile`` of their image scores; the pixel
    threshold the ``quantile`` of their anomaly-map maxima, so that at most
    ``1 - quantile`` of good images (in expectation) are called defective, or
    show any mask pixel.

    Parameters
    ----------
    scores:
        ``(N,)`` image scores of good images.
    maps:
        ``(N, H, W)`` their anomaly maps.
    quantile:
        In ``(0, 1]``; 1.0 takes the largest good score.
    """
    if not 0 < quantile <= 1:
        raise InputError(f"quantile must be in (0, 1], got {quantile}")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise InputError("calibration needs at least one good image")
    peaks = np.asarray(maps, dtype=np.float64).reshape(scores.size, -1).max(axis=1)
    return Thresholds(
        float(np.quantile(scores, quantile)),
        float(np.quantile(peaks, quantile)),
        "good_quantile",
        float(quantile),
        int(scores.size),
    )


def f1_thresholds(
    labels: np.ndarray, scores: np.ndarray, masks: np.ndarray | None, maps: np.ndarray | None
) -> Thresholds:
    """F1-optimal image threshold and, with masks, F1-optimal pixel threshold over all pixels.

    Without masks the pixel threshold is the image threshold.
    """
    labels = np.asarray(labels)
    if np.unique(labels).size < 2:
        raise InputError("F1 calibration needs good and defective images in the validation set")
    _, image_t = f1_max(labels, scores)
    pixel_t = image_t
    if masks is not None and maps is not None and np.asarray(masks).any():
        _, pixel_t = f1_max(np.asarray(masks).ravel(), np.asarray(maps, dtype=np.float32).ravel())
    return Thresholds(float(image_t), float(pixel_t), "f1_max", None, int(labels.size))
