"""A run's results as the app shows them: metrics, decisions at a threshold, histogram, gallery order."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..data import read_image, read_mask, scan_test
from ..data.images import image_size
from ..data.transforms import Preprocess
from ..errors import InputError
from ..inference.visualize import map_to_original
from ..thresholds import Thresholds, is_defective


# ----------------------------------------------------------------- results
@dataclass
class RunResults:
    """A trained model's scores on the test images, with what the page needs to show them.

    ``labels`` and ``defects`` are None for unlabelled test images;
    ``sources`` are file paths or in-memory images; ``masks`` ground-truth mask
    files (None where there is none).
    """

    names: list[str]
    scores: np.ndarray
    maps: np.ndarray
    sources: list[Any]
    labels: np.ndarray | None = None
    defects: list[str] | None = None
    masks: list[Path | None] | None = None
    metrics: dict[str, Any] | None = None

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def original(self, i: int) -> Image.Image:
        """Test image ``i`` as RGB, at its own size."""
        source = self.sources[i]
        return source if isinstance(source, Image.Image) else read_image(source)

    def size(self, i: int) -> tuple[int, int]:
        """``(width, height)`` of test image ``i`` (a file's header only is read)."""
        source = self.sources[i]
        if isinstance(source, Image.Image):
            return source.size
        return image_size(source)

    def original_map(self, i: int, preprocess: Preprocess) -> np.ndarray:
        """The anomaly map of image ``i`` on the image's own pixels (resize and letterbox undone)."""
        return map_to_original(self.maps[i], preprocess, self.size(i))

    def mask(self, i: int) -> np.ndarray | None:
        """Ground-truth mask of image ``i`` (``(H, W)`` bool), an empty one for good images, None if unknown."""
        if self.masks is None:
            return None
        mask_path = self.masks[i]
        if mask_path is not None:
            return read_mask(mask_path)
        if self.labels is not None and self.labels[i] == 0:
            im = self.original(i)
            return np.zeros((im.height, im.width), dtype=bool)
        return None


def results_from_evaluation(result: dict, folder: str | os.PathLike) -> RunResults:
    """:class:`RunResults` of ``model.evaluate(folder, keep_maps=True)``."""
    masks = {str(s.path): s.mask_path for s in scan_test(folder)}
    paths = list(result["paths"])
    metrics = {k: v for k, v in result.items() if k not in ("scores", "labels", "defects", "paths", "maps")}
    return RunResults(
        names=[f"{Path(p).parent.name}/{Path(p).name}" for p in paths],
        scores=np.asarray(result["scores"], dtype=np.float64),
        maps=result["maps"],
        sources=paths,
        labels=np.asarray(result["labels"]),
        defects=list(result["defects"]),
        masks=[masks.get(p) for p in paths],
        metrics=metrics,
    )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating)) and bool(np.isfinite(value))


def metrics_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics as table rows ``{"metric", "value"}``, overall first, then per defect type."""
    names = {
        "image_auroc": "Image ROC AUC",
        "pixel_auroc": "Pixel ROC AUC",
        "aupro": "AUPRO (FPR <= 0.3)",
        "f1_max": "Best image F1",
        "f1_threshold": "Threshold of the best F1",
    }
    rows = [
        {"metric": label, "value": f"{metrics[key]:.4g}"} for key, label in names.items() if _finite(metrics.get(key))
    ]
    for defect, value in sorted((metrics.get("image_auroc_per_defect") or {}).items()):
        if _finite(value):
            rows.append({"metric": f"Image ROC AUC, good vs {defect}", "value": f"{value:.4g}"})
    rows.append(
        {
            "metric": "Test images (defective)",
            "value": f"{metrics.get('n_images', 0)} ({metrics.get('n_defective', 0)})",
        }
    )
    return rows


@dataclass(frozen=True)
class Decisions:
    """Counts of image decisions at one threshold (``tp`` and the rest only with labels)."""

    flagged: int
    total: int
    tp: int | None = None
    fp: int | None = None
    fn: int | None = None
    tn: int | None = None

    @property
    def precision(self) -> float | None:
        if self.tp is None or self.fp is None or self.tp + self.fp == 0:
            return None
        return self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        if self.tp is None or self.fn is None or self.tp + self.fn == 0:
            return None
        return self.tp / (self.tp + self.fn)


def decisions(scores: np.ndarray, threshold: float, labels: np.ndarray | None = None) -> Decisions:
    """Images at or above ``threshold`` are flagged defective; with labels, the confusion counts."""
    return decision_counts(is_defective(scores, threshold), labels)


def decision_counts(flagged: np.ndarray, labels: np.ndarray | None = None) -> Decisions:
    """Counts of the images ``flagged`` defective (``(N,)`` bool); with labels, the confusion counts."""
    flagged = np.asarray(flagged, dtype=bool)
    if labels is None:
        return Decisions(int(flagged.sum()), int(flagged.size))
    bad = np.asarray(labels) == 1
    return Decisions(
        int(flagged.sum()),
        int(flagged.size),
        int((flagged & bad).sum()),
        int((flagged & ~bad).sum()),
        int((~flagged & bad).sum()),
        int((~flagged & ~bad).sum()),
    )


def default_threshold(results: RunResults, thresholds: Thresholds | None) -> float:
    """Where the threshold slider starts: the model's calibrated threshold, else the best-F1 one, else the median."""
    if thresholds is not None:
        return float(thresholds.image)
    if results.metrics and results.metrics.get("f1_threshold") is not None:
        return float(results.metrics["f1_threshold"])
    return float(np.median(results.scores))


def threshold_origin(thresholds: Thresholds | None, metrics: dict[str, Any] | None) -> str:
    """A line saying where the threshold slider starts and what the best-F1 threshold on the test images is."""
    if thresholds is not None:
        quantile = f"the {thresholds.quantile:g} quantile of " if thresholds.quantile is not None else ""
        line = (
            f"It starts at {thresholds.image:.4f}: {quantile}the scores of {thresholds.n_images} good images "
            f"held out from training (rule {thresholds.rule})."
        )
    elif metrics and _finite(metrics.get("f1_threshold")):
        line = "It starts at the threshold of the best F1 on these test images."
    else:
        line = "It starts at the median score: the model has no thresholds and the images have no labels."
    if thresholds is not None and metrics and _finite(metrics.get("f1_threshold")):
        line += f" The best F1 on these test images is reached at {metrics['f1_threshold']:.4f}."
    return line


def histogram_rows(results: RunResults, bins: int = 30) -> list[dict[str, Any]]:
    """Score histogram bars ``{"score", "score_end", "images", "kind"}`` per kind (good, defective or unlabelled)."""
    scores = results.scores
    edges = np.histogram_bin_edges(scores, bins=bins)
    if results.labelled:
        kinds = np.where(results.labels == 1, "defective", "good")
    else:
        kinds = np.full(scores.shape, "unlabelled")
    rows = []
    for kind in ("good", "defective", "unlabelled"):
        sel = kinds == kind
        if not sel.any():
            continue
        counts, _ = np.histogram(scores[sel], bins=edges)
        rows += [
            {"score": float(lo), "score_end": float(hi), "images": int(c), "kind": kind}
            for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
        ]
    return rows


SORTS = ("score, highest first", "score, lowest first", "name")


def gallery_order(results: RunResults, defects: Sequence[str] | None = None, sort: str = SORTS[0]) -> list[int]:
    """Indices of the images to show: of the chosen defect types (all when None), in ``sort`` order."""
    if sort not in SORTS:
        raise InputError(f"unknown sort {sort!r}; choose one of {', '.join(SORTS)}")
    keep = [
        i
        for i in range(len(results.names))
        if defects is None or results.defects is None or results.defects[i] in defects
    ]
    if sort == "name":
        return sorted(keep, key=lambda i: results.names[i])
    return sorted(keep, key=lambda i: results.scores[i], reverse=sort == SORTS[0])


def auto_colour_range(maps: np.ndarray) -> tuple[float, float]:
    """The lowest and highest anomaly-map value over every test image (one colour scale for all)."""
    lo, hi = float(np.min(maps)), float(np.max(maps))
    return lo, hi if hi > lo else lo + 1.0
