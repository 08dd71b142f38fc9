"""What the web app computes, without Streamlit: datasets, uploads, settings, results, the gallery.

Each function here is plain Python on plain data, so it is tested on its own;
:mod:`indad.app.page` only lays the results out.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..backbones import OFFLINE_BACKBONES
from ..config import load_config
from ..data import GOOD, dataset_folders, list_images, read_image, read_mask, scan_test
from ..data.images import decode_image, image_size, to_rgb
from ..data.transforms import RESIZE_MODES
from ..errors import ConfigError, ImageReadError, InputError
from ..inference.visualize import heatmap_image, map_to_original, mask_image, overlay_image
from ..methods import METHODS
from ..progress import ProgressEvent
from ..regions import Region, find_regions
from ..roi import roi_mask
from ..thresholds import DEFAULT_DECISION, Decision, Thresholds, decision_label, is_defective

MIN_GOOD_IMAGES = 3
HOLDOUT_MIN_IMAGES = 10  # fewer good images than this: all train, no thresholds from a holdout
HOLDOUT = 0.1
ONLINE_BACKBONES = ("wide_resnet50_2", "resnet18", "resnet50", "efficientnet_b4")
NEEDS_INTERNET = " (needs internet)"


# ----------------------------------------------------------------- settings
def backbone_choices() -> list[str]:
    """Backbone labels: the offline ones first, the others marked as needing internet."""
    return list(OFFLINE_BACKBONES) + [name + NEEDS_INTERNET for name in ONLINE_BACKBONES]


def backbone_name(label: str) -> str:
    """The timm name behind a label of :func:`backbone_choices`."""
    return label.removesuffix(NEEDS_INTERNET)


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter the sidebar offers."""

    name: str
    label: str
    low: float
    high: float
    step: float
    help: str


MAIN_PARAMS: dict[str, tuple[ParamSpec, ...]] = {
    "patchcore": (
        ParamSpec(
            "f_coreset",
            "Coreset fraction",
            0.001,
            1.0,
            0.001,
            "Share of the training patches kept in the memory bank; more is slower and a little more accurate.",
        ),
        ParamSpec(
            "n_reweight",
            "Re-weighting neighbours",
            0,
            9,
            1,
            "Neighbours of the re-weighting of the paper's image score; 0 turns it off.",
        ),
    ),
    "padim": (
        ParamSpec(
            "d_reduced",
            "Channels kept",
            10,
            400,
            10,
            "Random channels kept per position for the Gaussian; more is slower and uses more memory.",
        ),
    ),
    "spade": (
        ParamSpec("k", "Nearest images (k)", 1, 50, 1, "Training images the image score averages over."),
        ParamSpec("kappa", "Nearest pixels (kappa)", 1, 10, 1, "Gallery features each pixel score averages over."),
    ),
}
COMMON_PARAMS = (
    ParamSpec(
        "image_size",
        "Image size (px)",
        64,
        2048,
        32,
        "The working size: every image is resized to it (tiles are cut from it).",
    ),
    ParamSpec("blur_sigma", "Map blur (sigma, px)", 0.0, 16.0, 0.5, "Gaussian blur of the anomaly maps."),
)


TILE_SIZE, TILE_OVERLAP = 128, 16  # where the sidebar's tile settings start


def shape_params(image_size: int, resize: str, tile_size: int | None = None, overlap: int = 0) -> dict[str, Any]:
    """The model parameters saying how an image meets the network: resize mode and tiles.

    Parameters
    ----------
    image_size:
        The working size every image is resized to (the tiles are cut from it).
    resize:
        One of :data:`~indad.data.transforms.RESIZE_MODES` (``"fit"`` keeps the aspect ratio).
    tile_size, overlap:
        Square tiles of ``tile_size`` pixels sharing ``overlap`` pixels; None: untiled.

    Raises
    ------
    InputError
        An unknown resize mode, a tile larger than the working size, an overlap not smaller than the tile.
    """
    if resize not in RESIZE_MODES:
        raise InputError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if tile_size is None:
        return {"resize": resize, "tile": None}
    if tile_size > image_size:
        raise InputError(f"the tile size {tile_size} px is larger than the image size {image_size} px")
    if not 0 <= overlap < tile_size:
        raise InputError(f"the tile overlap must be at least 0 and below the tile size {tile_size} px, got {overlap}")
    return {"resize": resize, "tile": {"size": int(tile_size), "overlap": int(overlap)}}


def shape_summary(model) -> str:
    """How ``model`` sees an image, in words: ``"fit into 256x256, tiles of 128x128 (overlap 16)"``."""
    height, width = model.preprocess.output_size
    words = f"{model.preprocess.mode} into {width}x{height}"
    if model.tile is not None:
        th, tw = model.tile.size
        words += f", tiles of {tw}x{th} (overlap {model.tile.overlap})"
    return words + (", a region of interest" if model.roi_mask is not None else "")


def default_params(method: str) -> dict[str, Any]:
    """The method's shipped config (``indad/configs/METHOD.yaml``) as parameters."""
    return dict(load_config(method, method)["params"])


APP_METHODS = tuple(m for m in METHODS if m in MAIN_PARAMS)
"""The methods the sidebar offers: not the ensemble, whose backbone and image size are per member (CLI, configs)."""


def param_specs(method: str) -> tuple[ParamSpec, ...]:
    """The hyperparameters offered for ``method``: its own, then the shared ones."""
    if method not in APP_METHODS:
        raise ConfigError(f"unknown method {method!r} in the app; known: {', '.join(APP_METHODS)}")
    return MAIN_PARAMS[method] + COMMON_PARAMS


# ----------------------------------------------------------------- data sources
@dataclass(frozen=True)
class DatasetInfo:
    """A dataset folder in MVTec AD layout found under the data root."""

    path: Path
    n_train: int
    n_test: int

    @property
    def summary(self) -> str:
        return f"{self.n_train} good images to train, {self.n_test} to test"


def find_datasets(root: str | os.PathLike) -> list[DatasetInfo]:
    """The datasets under ``root`` (:func:`~indad.data.dataset_folders`) with images in ``train/good``."""
    found = []
    for folder in dataset_folders(root):
        n_train = len(list_images(folder / "train" / GOOD))
        if n_train:
            n_test = len(list_images(folder / "test", recursive=True))
            found.append(DatasetInfo(folder, n_train, n_test))
    return found


@dataclass
class UploadCheck:
    """Uploaded images read and checked: the usable ones and what is wrong with the others."""

    images: list[Image.Image] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _odd_ones(names: Sequence[str], values: Sequence[str], what: str, role: str) -> str | None:
    """A message naming the images whose ``values`` differ from the most common one, or None."""
    counts = Counter(values)
    if len(counts) < 2:
        return None
    common, n_common = counts.most_common(1)[0]
    odd = [f"{n} ({v})" for n, v in zip(names, values, strict=True) if v != common]
    shown = ", ".join(odd[:5]) + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
    return (
        f"The {role} images mix {what}s: {n_common} are {common}, but {shown}. "
        f"Every image is resized to the same size and read as RGB, so they can be scored, "
        f"but images from another camera or setting often look anomalous."
    )


def read_uploads(files: Sequence[tuple[str, bytes]], role: str, min_count: int = 0) -> UploadCheck:
    """Uploaded files ``(name, content)`` read as RGB images and checked.

    Errors: a file that is not a readable image, fewer than ``min_count``
    images. Warnings: images of different sizes or colour modes.
    """
    check = UploadCheck()
    sizes, modes = [], []
    for name, content in files:
        try:
            im = decode_image(io.BytesIO(content), name)
        except ImageReadError as exc:
            cause = exc.__cause__
            reason = "not an image" if isinstance(cause, UnidentifiedImageError) else f"unreadable image ({cause})"
            check.errors.append(f"{name} ({role}): {reason}.")
            continue
        check.images.append(to_rgb(im))
        check.names.append(name)
        modes.append(im.mode)
        sizes.append(f"{im.width}x{im.height}")
    if len(check.images) < min_count:
        check.errors.append(
            f"At least {min_count} good images are needed to learn what normal looks like; "
            f"{len(check.images)} readable {'was' if len(check.images) == 1 else 'were'} uploaded."
        )
    for what, values in (("size", sizes), ("colour mode", modes)):
        message = _odd_ones(check.names, values, what, role)
        if message:
            check.warnings.append(message)
    return check


def read_roi_upload(name: str, content: bytes) -> np.ndarray:
    """An uploaded region-of-interest picture as a bool mask ``(h, w)`` at its own size, True (white) = inspect.

    Read as ``indad --roi`` reads its file (:func:`~indad.roi.roi_mask`).

    Raises
    ------
    InputError
        Not a readable image, or no white pixel; the message names ``name``.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="indad-app-") as tmp:
        path = Path(tmp) / (Path(name).name or "roi.png")
        path.write_bytes(content)
        try:
            return roi_mask(path)
        except InputError as exc:
            raise type(exc)(str(exc).replace(str(path), name)) from None


def apply_roi(model, mask: np.ndarray, name: str) -> None:
    """Give an unfitted ``model`` the region of interest ``mask`` (``(h, w)`` bool, the images' aspect ratio).

    The mask is resized (letterboxed, cropped) as the images are; ``name``
    stands for its source in the model's parameters (as in a loaded model).
    """
    model.set_roi_mask(model.preprocess.mask(mask))
    model.roi = name


def roi_on_original(roi: Any, preprocess, size: tuple[int, int]) -> np.ndarray | None:
    """A model's ``roi_mask`` (working size; None: no region of interest) on an image of ``size = (w, h)``."""
    if roi is None:
        return None
    working = np.asarray(roi.cpu() if hasattr(roi, "cpu") else roi, dtype=np.float32)
    return map_to_original(working, preprocess, size) >= 0.5


# ----------------------------------------------------------------- progress
class ThrottledProgress:
    """A progress callback that forwards at most one event per ``interval`` seconds (and every stage's end).

    ``show(fraction, text)`` gets a fraction in [0, 1] and a line of text.
    """

    def __init__(self, show, interval: float = 0.2, clock=None) -> None:
        import time

        self.show, self.interval, self.clock = show, interval, clock or time.monotonic
        self.last = float("-inf")

    def __call__(self, event: ProgressEvent) -> None:
        now = self.clock()
        final = event.total is not None and event.done >= event.total
        if not final and event.done and now - self.last < self.interval:
            return
        self.last = now
        fraction = event.fraction
        count = f"{event.done}/{event.total}" if event.total else f"{event.done}"
        self.show(0.0 if fraction is None else fraction, f"{event.stage}: {count}")


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

    def original_map(self, i: int, preprocess) -> np.ndarray:
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
        raise ValueError(f"unknown sort {sort!r}; choose one of {', '.join(SORTS)}")
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


# ----------------------------------------------------------------- defect regions and decisions
def image_regions(results: RunResults, preprocess, pixel_threshold: float, min_area: int = 0) -> list[list[Region]]:
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
    preprocess,
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


def model_file_bytes(model, thresholds: Thresholds | None) -> bytes:
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
