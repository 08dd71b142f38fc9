"""A fitted model on a labelled set: its metrics (:func:`evaluate`) and F1-optimal thresholds (:func:`calibrate_f1`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from ..metrics import evaluate_predictions
from ..thresholds import Thresholds, f1_thresholds
from .protocol import Batch


class ScoresBatches(Protocol):
    """What evaluation needs of a fitted model: its name and its scored test batches."""

    @property
    def method(self) -> str: ...

    def scored_batches(
        self, data: Any, desc: str, batch_size: int | None = None, labelled_for: str | None = None
    ) -> Iterator[tuple[Batch, np.ndarray, np.ndarray]]: ...


def evaluate(model: ScoresBatches, data: Any, batch_size: int | None = None, keep_maps: bool = False) -> dict[str, Any]:
    """Metrics of ``model`` on a labelled test set (a dataset folder in MVTec AD layout, or its test dataset).

    Returns a dict with ``image_auroc``, ``pixel_auroc``, ``aupro``, ``f1_max``,
    ``f1_threshold``, per-defect image ROC AUC, counts, and the per-image
    ``scores``, ``labels``, ``defects`` and ``paths``; with ``keep_maps`` also
    ``maps``, the ``(N, H, W)`` anomaly maps.
    """
    scores, labels, defects, paths = [], [], [], []
    masks, maps, all_maps = [], [], []
    start = time.perf_counter()
    for batch, s, m in model.scored_batches(data, f"{model.method}: evaluate", batch_size, labelled_for="evaluate"):
        scores.append(s)
        labels.append(np.asarray(batch["label"]))
        defects += [d or "good" for d in batch["defect"]]
        paths += list(batch["path"])
        if keep_maps:
            all_maps.append(m)
        keep = np.asarray(batch["has_mask"], dtype=bool)
        if keep.any():
            masks.append(batch["mask"].numpy()[keep])
            maps.append(m[keep])
    elapsed = time.perf_counter() - start
    scores_arr, labels_arr = np.concatenate(scores), np.concatenate(labels)
    result = evaluate_predictions(
        labels_arr,
        scores_arr,
        np.concatenate(masks) if masks else None,
        np.concatenate(maps) if maps else None,
        defects,
    )
    result["predict_s"] = elapsed
    result["predict_ms_per_image"] = 1000.0 * elapsed / max(1, len(scores_arr))
    result["scores"] = scores_arr.tolist()
    result["labels"] = labels_arr.tolist()
    result["defects"] = defects
    result["paths"] = paths
    if keep_maps:
        result["maps"] = np.concatenate(all_maps)
    return result


def calibrate_f1(model: ScoresBatches, validation: Any) -> Thresholds:
    """F1-optimal image and pixel thresholds of ``model`` on a labelled validation set (MVTec AD layout)."""
    scores, labels, masks, maps = [], [], [], []
    for batch, s, m in model.scored_batches(
        validation, f"{model.method}: calibrate", None, labelled_for="F1 calibration"
    ):
        scores.append(s)
        labels.append(np.asarray(batch["label"]))
        keep = np.asarray(batch["has_mask"], dtype=bool) | (np.asarray(batch["label"]) == 0)
        masks.append(batch["mask"].numpy()[keep])
        maps.append(m[keep])
    return f1_thresholds(np.concatenate(labels), np.concatenate(scores), np.concatenate(masks), np.concatenate(maps))
