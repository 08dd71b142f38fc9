"""The one result pipeline: scored image -> decision -> regions -> :class:`LineResult` -> pictures and sinks.

``indad predict``, the hot folder, the stream and the service all go through it, so a new source or sink is
one small class. The scorer runs on a batch of inputs; each readable one is judged (decision, defect regions
on the anomaly map at the original size), its pictures are written if asked, and every result, scored or
not, is handed to the publisher (the persistent :class:`~indad.line.outbox.Outbox` of the sinks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import torch
from PIL import Image

from ..export.model_file import ModelInfo
from ..files import atomic_output
from ..inference.visualize import PNG_LEVEL, heatmap_image, heatmap_vmax, map_to_original, mask_image, overlay_image
from ..regions import find_regions
from ..thresholds import DEFAULT_DECISION, Decision, Thresholds, is_defective
from .result import LineResult, new_id, pixels_hash, utc_now

if TYPE_CHECKING:
    from ..inference.scorer import Scorer

Pictures = Literal["all", "defective", "none"]


@dataclass
class Input:
    """An image to score: its source name and original picture (None if unreadable, with its ``error``).

    ``image`` is the preprocessed tensor (computed when missing); ``picture`` the relative PNG name its pictures
    get under the pictures folder (None: no pictures); ``result_id`` a fixed result id (default: a new one).
    """

    source: str
    original: Image.Image | None
    image: torch.Tensor | None = None
    error: str = ""
    trigger_id: str | None = None
    picture: Path | None = None
    result_id: str | None = None


@dataclass
class Scored:
    """A result and, when scored, the anomaly map at the original image size."""

    result: LineResult
    full: np.ndarray | None = None


class Publisher(Protocol):
    """Takes results for delivery (durably: on return they are safe)."""

    def publish(self, results: list[LineResult]) -> None: ...


def failed_result(item: Input, model: ModelInfo, error: str) -> LineResult:
    """The result of an image that was not scored."""
    width, height = item.original.size if item.original is not None else (0, 0)
    digest = pixels_hash(item.original) if item.original is not None else ""
    return LineResult(
        id=item.result_id or new_id(), time=utc_now(), source=item.source, image_hash=digest, width=width,
        height=height, score=None, normalized_score=None, decision=None, threshold=None, regions=None,
        model=model.name, model_version=model.version, trigger_id=item.trigger_id, error=error,
    )  # fmt: skip


def judge(item: Input, score: float, amap: np.ndarray, scorer: Scorer, model: ModelInfo, decision: Decision) -> Scored:
    """An image's result from its score and anomaly map: normalised score, decision and defect regions (of at
    least ``decision.min_area`` pixels, on the map brought back to the original size) when the model has
    thresholds."""
    if item.original is None:
        raise ValueError("judge needs the original image")
    t = scorer.thresholds
    full = map_to_original(amap, scorer.preprocess, item.original.size)
    regions = None if t is None else find_regions(full, t.pixel, decision.min_area)
    result = LineResult(
        id=item.result_id or new_id(),
        time=utc_now(),
        source=item.source,
        image_hash=pixels_hash(item.original),
        width=item.original.width,
        height=item.original.height,
        score=score,
        normalized_score=None if t is None else score / t.image,
        decision=None if t is None else decision.label(score, regions or [], t),
        threshold=None if t is None else t.image,
        regions=None if regions is None else [r.to_dict() for r in regions],
        model=model.name,
        model_version=model.version,
        trigger_id=item.trigger_id,
        error="",
    )
    return Scored(result, full)


def write_pictures(root: Path, name: Path, original: Image.Image, full: np.ndarray, t: Thresholds | None) -> None:
    """``root/heatmaps|overlays|masks/name``: the heatmap, overlay and mask of an image whose anomaly map at its
    original size is ``full``, each written whole or not at all."""
    mask = is_defective(full, t.pixel) if t is not None else np.zeros(full.shape, dtype=bool)
    heat = heatmap_image(full, heatmap_vmax(full, t))
    for kind, picture in (
        ("heatmaps", heat),
        ("overlays", overlay_image(original, heat, mask)),
        ("masks", mask_image(mask)),
    ):
        with atomic_output(root / kind / name) as partial:
            picture.save(partial, format="PNG", compress_level=PNG_LEVEL)


@dataclass
class Pipeline:
    """Scores inputs with ``scorer`` and turns them into :class:`LineResult` s named after ``model``.

    ``pictures`` says whose heatmap, overlay and mask are written (under the folder given to :meth:`run`,
    for inputs with a ``picture`` name); ``publisher`` takes every result (scored or not) before :meth:`run`
    returns.
    """

    scorer: Scorer
    model: ModelInfo = field(default_factory=ModelInfo)
    decision: Decision = DEFAULT_DECISION
    pictures: Pictures = "all"
    publisher: Publisher | None = None

    def prepare(self, item: Input) -> Input:
        """``item`` with its preprocessed tensor (an error instead if preprocessing fails)."""
        if item.error or item.original is None or item.image is not None:
            return item
        try:
            item.image = self.scorer.preprocess.image(item.original)
        except Exception as exc:  # an image the preprocessing refuses becomes an error result
            item.error = str(exc) or type(exc).__name__
        return item

    def run(self, items: list[Input], root: Path | None = None) -> list[Scored]:
        """The results of ``items``, in order; the readable ones scored in one batch."""
        items = [self.prepare(item) for item in items]
        good = [i for i, item in enumerate(items) if not item.error and item.image is not None]
        done: dict[int, Scored] = {}
        if good:
            batch = torch.stack([items[i].image for i in good])  # type: ignore[misc]
            scores, maps = self.scorer(batch)
            for i, score, amap in zip(good, scores, maps, strict=True):
                done[i] = self.finish(items[i], float(score), np.asarray(amap), root)
        out = [
            done[i] if i in done else Scored(failed_result(item, self.model, item.error or "no image"))
            for i, item in enumerate(items)
        ]
        if self.publisher is not None:
            self.publisher.publish([s.result for s in out])
        return out

    def finish(self, item: Input, score: float, amap: np.ndarray, root: Path | None) -> Scored:
        """Judge one scored input and write its pictures if asked."""
        scored = judge(item, score, amap, self.scorer, self.model, self.decision)
        wanted = self.pictures == "all" or (self.pictures == "defective" and scored.result.decision == "defective")
        if root is not None and item.picture is not None and wanted and scored.full is not None:
            assert item.original is not None
            write_pictures(root, item.picture, item.original, scored.full, self.scorer.thresholds)
        return scored
