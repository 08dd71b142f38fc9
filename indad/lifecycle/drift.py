"""Drift alarms: what a model scores now, against what it was fitted and calibrated on.

Over a rolling window of the last scored images, a :class:`DriftMonitor`
compares with the model file's reference (see :mod:`indad.lineage`):

- ``brightness`` and ``contrast``: the window's mean grey level and grey-level
  spread over the training images' (a relative change: 0.1 is 10 %); the limit is at
  least 3.5 standard errors of that change, from the training images' spread and
  the sizes of the window and of the training sample (MTD's tiles vary a lot);
- ``ks``: the two-sample Kolmogorov-Smirnov statistic between the window's image
  scores and the calibration scores (the largest gap of their distributions);
  its limit is at least the test's critical value at 0.1 % for these sample sizes
  (a threshold calibrated on a handful of images cannot tell more);
- ``above_threshold``: the share of the window at or above the image threshold;
  its limit is at least the share expected of good images plus three standard
  deviations of it in a window: a threshold at the ``q`` quantile of ``n``
  calibration images leaves about ``max(1 - q, 1 / (n + 1))`` of good images above;
- score quantiles (median, 90 %), reported without an alarm of their own.

An alarm names every statistic past its limit. The statistics are plain
values (:meth:`DriftMonitor.status`) and Prometheus gauges (:meth:`DriftMonitor.exposition`).
"""

from __future__ import annotations

import collections
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..lineage import utc_now


@dataclass(frozen=True)
class DriftLimits:
    """When the monitor raises an alarm.

    Attributes
    ----------
    window:
        Images in the rolling window.
    min_images:
        Images needed before any alarm.
    brightness, contrast:
        Largest relative change of the window's mean brightness (contrast) from the training images'.
    ks:
        Largest KS statistic between the window's scores and the calibration scores (raised to the critical
        value at 0.1 % for the sample sizes).
    above_threshold:
        Largest share of the window at or above the image threshold (raised to the share expected of good
        images plus 3 standard deviations).
    """

    window: int = 100
    min_images: int = 30
    brightness: float = 0.1
    contrast: float = 0.15
    ks: float = 0.5
    above_threshold: float = 0.2

    def __post_init__(self) -> None:
        if not 1 <= self.min_images <= self.window:
            raise InputError(f"min_images must be in [1, window={self.window}], got {self.min_images}")


@dataclass(frozen=True)
class DriftReference:
    """What a model saw: training brightness and contrast (means), calibration score quantiles, the threshold."""

    brightness: float
    contrast: float
    score_quantiles: np.ndarray
    threshold: float | None
    n_calibration: int = 1000
    quantile: float = 0.99
    brightness_spread: float = 0.0
    contrast_spread: float = 0.0
    n_training: int = 64

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> DriftReference:
        """The reference in a model file's header (fit with ``holdout`` or ``calibrate`` writes it)."""
        training, scores = header.get("training_set"), header.get("score_reference")
        if not training or not scores:
            raise InputError(
                "the model file has no drift reference (training-set brightness and calibration scores): "
                "fit it from image files with a holdout, or calibrate it, with this indad"
            )
        thresholds = header.get("thresholds") or {}
        return cls(
            float(training["brightness"][0]),
            float(training["contrast"][0]),
            np.asarray(scores["quantiles"], dtype=np.float64),
            thresholds.get("image"),
            int(scores.get("n", 1000)),
            float(thresholds.get("quantile") or 0.99),
            float(training["brightness"][1]) / max(float(training["brightness"][0]), 1e-6),
            float(training["contrast"][1]) / max(float(training["contrast"][0]), 1e-6),
            min(int(training.get("count", 64)), 64),
        )


def ks_statistic(sample: np.ndarray, reference_quantiles: np.ndarray) -> float:
    """The KS statistic between ``sample`` and the distribution given by its evenly spaced quantiles (0 to 1)."""
    sample = np.sort(np.asarray(sample, dtype=np.float64))
    ref = np.asarray(reference_quantiles, dtype=np.float64)
    grid = np.concatenate([sample, ref])
    ecdf_sample = np.searchsorted(sample, grid, side="right") / sample.size
    # the reference's CDF, piecewise linear between its quantiles
    levels = np.linspace(0.0, 1.0, ref.size)
    cdf_ref = np.interp(grid, ref, levels, left=0.0, right=1.0)
    return float(np.abs(ecdf_sample - cdf_ref).max())


@dataclass
class DriftStatus:
    """The window's statistics, and the alarm: the names of the statistics past their limits (empty: none)."""

    images: int
    brightness: float | None = None
    contrast: float | None = None
    ks: float | None = None
    above_threshold: float | None = None
    score_median: float | None = None
    score_p90: float | None = None
    tripped: list[str] = field(default_factory=list)
    time: str = ""

    @property
    def alarm(self) -> bool:
        """Whether any statistic is past its limit."""
        return bool(self.tripped)

    def to_dict(self) -> dict[str, Any]:
        """Plain values."""
        return asdict(self) | {"alarm": self.alarm}


class DriftMonitor:
    """Rolling drift statistics of one model's scored images (thread-safe; see the module's docstring)."""

    def __init__(self, reference: DriftReference, limits: DriftLimits | None = None, model: str = "model") -> None:
        self.reference = reference
        self.limits = limits or DriftLimits()
        self.model = model
        n = self.limits.window
        self._scores: collections.deque[float] = collections.deque(maxlen=n)
        self._brightness: collections.deque[float] = collections.deque(maxlen=n)
        self._contrast: collections.deque[float] = collections.deque(maxlen=n)
        self._lock = threading.Lock()
        self.seen = 0
        self.alarms = 0
        self.history: list[DriftStatus] = []
        self.tripped_counts: collections.Counter[str] = collections.Counter()

    def observe(self, score: float, brightness: float, contrast: float) -> DriftStatus:
        """Add one scored image (its score, brightness and contrast: :func:`indad.lineage.image_statistics`)."""
        with self._lock:
            self._scores.append(float(score))
            self._brightness.append(float(brightness))
            self._contrast.append(float(contrast))
            self.seen += 1
            status = self._status_locked()
            self.alarms += status.alarm
            self.tripped_counts.update(status.tripped)
            if self.seen % max(1, self.limits.window // 10) == 0:
                self.history.append(status)
            return status

    def status(self) -> DriftStatus:
        """The statistics of the current window."""
        with self._lock:
            return self._status_locked()

    def _status_locked(self) -> DriftStatus:
        n, ref, lim = len(self._scores), self.reference, self.limits
        if n == 0:
            return DriftStatus(0, time=utc_now())
        scores = np.asarray(self._scores)
        status = DriftStatus(
            self.seen,
            brightness=float(np.mean(self._brightness)) / max(ref.brightness, 1e-6) - 1.0,
            contrast=float(np.mean(self._contrast)) / max(ref.contrast, 1e-6) - 1.0,
            ks=ks_statistic(scores, ref.score_quantiles),
            above_threshold=None if ref.threshold is None else float(np.mean(scores >= ref.threshold)),
            score_median=float(np.median(scores)),
            score_p90=float(np.quantile(scores, 0.9)),
            time=utc_now(),
        )
        if n >= lim.min_images:
            m = ref.n_calibration
            ks_limit = max(lim.ks, 1.95 * np.sqrt((n + m) / (n * m)))
            expected = max(1.0 - ref.quantile, 1.0 / (m + 1))
            share_limit = max(lim.above_threshold, expected + 3.0 * np.sqrt(expected * (1 - expected) / n))
            error = 3.5 * np.sqrt(1.0 / n + 1.0 / ref.n_training)  # standard errors of the change, in spreads
            checks = {
                "brightness": abs(status.brightness or 0.0) > max(lim.brightness, error * ref.brightness_spread),
                "contrast": abs(status.contrast or 0.0) > max(lim.contrast, error * ref.contrast_spread),
                "ks": (status.ks or 0.0) > ks_limit,
                "above_threshold": (status.above_threshold or 0.0) > share_limit,
            }
            status.tripped = [name for name, past in checks.items() if past]
        return status

    def exposition(self) -> str:
        """The statistics as Prometheus gauges (text format), labelled with the model's name."""
        s = self.status()
        label = f'{{model="{self.model}"}}'
        lines = []
        for name, value, text in (
            ("brightness_change", s.brightness, "relative change of mean brightness from the training images"),
            ("contrast_change", s.contrast, "relative change of mean contrast from the training images"),
            ("score_ks", s.ks, "KS statistic of the window's scores against the calibration scores"),
            ("above_threshold_share", s.above_threshold, "share of the window at or above the image threshold"),
            ("score_median", s.score_median, "median image score of the window"),
            ("score_p90", s.score_p90, "90% quantile of the window's image scores"),
            ("alarm", float(s.alarm), "1 when a drift statistic is past its limit"),
            ("window_images", float(min(s.images, self.limits.window)), "images in the window"),
        ):
            if value is not None:
                lines += [f"# HELP indad_drift_{name} {text}", f"# TYPE indad_drift_{name} gauge"]
                lines.append(f"indad_drift_{name}{label} {value:.6g}")
        return "\n".join(lines) + "\n"
