"""Defect regions, verdicts and the gallery's pictures; the files the app offers for download."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..data.transforms import Preprocess
from ..inference.visualize import heatmap_image, map_to_original, mask_image, overlay_image
from ..methods import AnomalyModel
from ..regions import Region, find_regions
from ..thresholds import DEFAULT_DECISION, Decision, Thresholds, decision_label, is_defective
from .inputs import roi_on_original
from .outcomes import RunResults


# ----------------------------------------------------------------- defect regions and decisions
def image_regions(
    results: RunResults, preprocess: Preprocess, pixel_threshold: float, min_area: int = 0
) -> list[list[Region]]:
    """Per test image, its defect regions (:func:`~indad.regions.find_regions`) on the image's own pixels.

    As ``indad predict`` reports them: the map is brought back to the original
    size first, so areas, boxes and ``min_area`` are in original-image pixels.
    """
    return [
        find_regions(results.original_map(i, preprocess), pixel_threshold, min_area) for i in range(len(results.names))
    ]


def thresholds_at(thresholds: Thresholds | None, image: float, pixel: float) -> Thresholds:
    """Thresholds set by hand (the page's sliders), keeping how many images the model's own came from."""
    return Thresholds(float(image), float(pixel), "manual", None, 0 if thresholds is None else thresholds.n_images)


def verdicts(
    scores: np.ndarray, regions: Sequence[Sequence[Region]], decision: Decision, thresholds: Thresholds
) -> np.ndarray:
    """``(N,)`` bool: each image called defective by ``decision`` (:meth:`~indad.thresholds.Decision.label`)."""
    return np.array(
        [
            decision.label(float(score), found, thresholds) == "defective"
            for score, found in zip(scores, regions, strict=True)
        ],
        dtype=bool,
    )


def regions_summary(regions: Sequence[Region]) -> str:
    """``"2 regions, largest 345 px"``, or ``"no region"``."""
    if not regions:
        return "no region"
    largest = max(r.area for r in regions)
    return f"{len(regions)} region{'s' if len(regions) > 1 else ''}, largest {largest} px"


def region_rows(regions: Sequence[Region]) -> list[dict[str, Any]]:
    """One table row per region: its number, area, share, bounding box, centroid, peak and mean score."""
    rows = []
    for number, r in enumerate(regions, start=1):
        x0, y0, x1, y1 = r.bbox
        rows.append(
            {
                "region": number,
                "area (px)": r.area,
                "area share": r.area_share,
                "x0": x0,
                "y0": y0,
                "x1": x1,
                "y1": y1,
                "centroid x": r.centroid[0],
                "centroid y": r.centroid[1],
                "peak": r.peak,
                "mean": r.mean,
            }
        )
    return rows


# ----------------------------------------------------------------- gallery
ROI_OUTLINE = (255, 215, 0)
BOX_COLOUR = (255, 0, 255)


def _line_width(size: tuple[int, int]) -> int:
    return max(1, min(size) // 150)


def draw_roi(picture: Image.Image, roi: np.ndarray | None, dim: float = 0.4) -> Image.Image:
    """``picture`` with the outside of the region of interest ``roi`` (``(H, W)`` bool) dimmed and its edge in gold."""
    if roi is None:
        return picture
    from scipy import ndimage

    arr = np.asarray(picture.convert("RGB"), dtype=np.float32).copy()
    arr[~roi] *= dim
    edge = roi & ~ndimage.binary_erosion(roi, iterations=_line_width(picture.size), border_value=1)
    arr[edge] = ROI_OUTLINE
    return Image.fromarray(arr.round().astype(np.uint8))


def draw_boxes(picture: Image.Image, regions: Sequence[Region]) -> Image.Image:
    """``picture`` with each region's bounding box drawn in magenta."""
    if not regions:
        return picture
    from PIL import ImageDraw

    boxed = picture.convert("RGB")
    draw = ImageDraw.Draw(boxed)
    for r in regions:
        x0, y0, x1, y1 = r.bbox
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=BOX_COLOUR, width=_line_width(picture.size))
    return boxed


@dataclass(frozen=True)
class GalleryPictures:
    """What the gallery shows of one test image, each at the original image's size."""

    image: Image.Image
    heatmap: Image.Image
    overlay: Image.Image
    mask: Image.Image | None


def gallery_pictures(
    results: RunResults,
    i: int,
    preprocess: Preprocess,
    colour_range: tuple[float, float],
    pixel_threshold: float | None = None,
    roi: Any = None,
    regions: Sequence[Region] = (),
) -> GalleryPictures:
    """Image ``i``, its anomaly map coloured over ``colour_range``, the overlay and the ground-truth mask.

    With ``pixel_threshold`` the overlay outlines the pixels at or above it;
    with ``roi`` (a model's ``roi_mask``) the image and the overlay dim what lies
    outside the region of interest and draw its edge; ``regions`` are boxed on the overlay.
    """
    original = results.original(i)
    amap = map_to_original(results.maps[i], preprocess, original.size)
    lo, hi = colour_range
    heat = heatmap_image(np.clip(amap - lo, 0.0, None), hi - lo)
    outline = None if pixel_threshold is None else is_defective(amap, pixel_threshold)
    truth = results.mask(i)
    inspected = roi_on_original(roi, preprocess, original.size)
    overlay = draw_boxes(draw_roi(overlay_image(original, heat, outline), inspected), regions)
    return GalleryPictures(draw_roi(original, inspected), heat, overlay, None if truth is None else mask_image(truth))


def model_file_bytes(model: AnomalyModel, thresholds: Thresholds | None) -> bytes:
    """The ``.indad`` file of ``model`` with ``thresholds`` in place of its own (the model is not changed)."""
    import copy
    import tempfile

    snapshot = copy.copy(model)
    snapshot.thresholds = thresholds
    with tempfile.TemporaryDirectory(prefix="indad-app-") as tmp:
        path = snapshot.save(Path(tmp) / "model.indad")
        return path.read_bytes()


def score_rows(
    names: Sequence[str],
    scores: np.ndarray,
    thresholds: Thresholds | None,
    regions: Sequence[Sequence[Region]] | None = None,
    decision: Decision = DEFAULT_DECISION,
) -> list[dict[str, Any]]:
    """One table (and CSV) row per scored image: name, score and, with thresholds, normalised score and decision.

    With ``regions`` (each image's, of at least ``decision.min_area`` pixels)
    the decision follows ``decision`` and the rows count the regions and give
    the largest one's area, as the columns of ``indad predict``'s CSV.
    """
    rows = []
    for i, (name, score) in enumerate(zip(names, scores, strict=True)):
        row: dict[str, Any] = {"image": name, "score": float(score)}
        found = None if regions is None else regions[i]
        if thresholds is not None:
            row["normalized score"] = float(score) / thresholds.image
            row["decision"] = (
                decision_label(float(score), thresholds.image)
                if found is None
                else decision.label(float(score), found, thresholds)
            )
        if found is not None:
            row["regions"] = len(found)
            row["largest area"] = max((r.area for r in found), default=0)
        rows.append(row)
    return rows


def with_image_threshold(thresholds: Thresholds | None, image: float, pixel: float | None = None) -> Thresholds | None:
    """The model's thresholds with the image threshold moved to ``image`` (and the pixel one to ``pixel``, if given).

    None stays None: there is nothing to keep.
    """
    if thresholds is None:
        return None
    return Thresholds(
        float(image), thresholds.pixel if pixel is None else float(pixel), "manual", None, thresholds.n_images
    )
