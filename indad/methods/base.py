"""What every method shares: parameters, inputs, batching, devices, fit, predict, evaluate and save.

A method is a dataclass of its hyperparameters (each one explicit in its
signature) plus the method protocol, the public hooks that fitting in one
process, on a Ray cluster, saving, loading and exporting are built from:

- :meth:`AnomalyModel.partial_fit_state` and :meth:`AnomalyModel.merge_states`:
  one shard's part of the fitted state (plain tensors, computable in another
  process), and the state from every shard's part; a one-process fit is one shard;
- :meth:`AnomalyModel.extend_state`: more normal images without refitting;
- :meth:`AnomalyModel.to_state` and :meth:`AnomalyModel.from_state`: what a model file holds;
- :meth:`AnomalyModel.build_module`: the plain scoring ``nn.Module`` of network inputs (one tile, when tiled).

The base class feeds them: :meth:`AnomalyModel.fit_batches` (images cut into
tiles when tiled) and :meth:`AnomalyModel.scoring_module` (the method's module
over whole images: tiles stitched, the region of interest applied).
"""

from __future__ import annotations

import dataclasses
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sized
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import nn

from ..backbones import RUNTIMES, Backbone, backbone_normalization, check_backbone_name, resolve_device
from ..data import Preprocess, first_image_size, make_loader, read_ahead, split_holdout, train_paths
from ..data.layout import is_paths
from ..data.tiles import TileGrid, Tiling
from ..data.transforms import as_size
from ..errors import InputError, NotCalibratedError, NotFittedError
from ..lineage import count_images, describe_training_set, note_change, score_reference, stamp
from ..metrics import evaluate_predictions
from ..progress import Progress, track
from ..regions import Region, find_regions
from ..roi import RoiSource, roi_mask
from ..thresholds import Thresholds, f1_thresholds, good_quantile_thresholds, is_defective
from ..version import __version__
from .whole_image import WholeImageModule

Batch = dict[str, Any]
"""A batch of images: ``image`` (a normalised ``(B, 3, H, W)`` tensor on the model's device), and, from
files, ``path``; from a labelled dataset also ``label``, ``defect``, ``mask`` and ``has_mask``."""

Tensors = dict[str, torch.Tensor]
"""Named tensors: a shard's part of the fitted state, or the tensors of a model file."""

# Constructor parameters that say where a model runs, not what it is: not stored in a model file.
RUNTIME_PARAMS = ("device", "progress", "weights", "num_workers")
NATIVE = "native"
"""``image_size`` of a model working at its training images' own size."""
ROI_TENSOR = "roi_mask"
"""The model file's tensor of the region of interest (bool, working size)."""


@dataclass(frozen=True)
class ModelState:
    """The fitted state of a method: its tensors and plain (JSON) values, as a model file holds them."""

    tensors: Tensors
    meta: dict[str, Any] = field(default_factory=dict)


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


@dataclass(eq=False, repr=False)
class AnomalyModel(ABC):
    """An anomaly detector fitted on good images only.

    Constructing one does no work: the backbone (weights and all) is built on
    first use. Subclasses are dataclasses that add their own parameters, set
    :attr:`method` and :attr:`default_strides` and implement the method protocol
    (see the module's docstring).

    Parameters
    ----------
    backbone_name:
        timm model name. The ``tf_efficientnet_lite0/1/2`` backbones work offline.
    strides:
        Output strides of the backbone stages the method uses (None: the method's default).
    image_size:
        The working size: every image is resized to it (int or ``(H, W)``), or
        ``"native"``: the size of the first training image, fixed by :meth:`fit`.
    crop_size:
        Optional centre crop after resizing.
    resize:
        ``"stretch"`` (the image fills ``image_size``) or ``"fit"`` (aspect ratio
        kept: scaled to fit inside, centred on black).
    tile:
        None (the working image is the network input), or tiles of the working
        image: ``{"size": 256, "overlap": 32}`` (or just the size). Fit and
        scoring see every tile; maps are stitched back, overlaps averaged, and
        the image score is the stitched map's maximum (see
        :mod:`~indad.data.tiles`).
    roi:
        Region of interest: a mask picture (white = inspect, any size),
        ``{"polygons": [[[x, y], ...]], "size": [width, height]}`` or a bool
        array (see :mod:`~indad.roi`). Outside it the anomaly map is 0 and the image score
        is the map's maximum. The model file and exports keep it.
    blur_sigma:
        Gaussian blur of the anomaly maps, in pixels.
    batch_size:
        Images per forward pass.
    device:
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``...
    fp16:
        Half-precision backbone on CUDA.
    backbone_runtime:
        Runtime of the backbone's forward pass when scoring. ``"onnxruntime"``:
        on the CPU the forward pass runs through ONNX Runtime (the same network,
        exported in memory and checked against torch on first use: features
        equal to torch's within 1e-4); torch on CUDA and in exports.
        ``"torch"``: eager torch everywhere (the exact previous path).
    fit_runtime:
        Runtime of the backbone when fitting (and in :meth:`add_normal`), as
        ``backbone_runtime``.
    weights:
        Explicit backbone weight file (else timm cache, hub, PyPI packages).
    num_workers:
        DataLoader worker processes for reading images.
    seed:
        Seeds every random choice (projections, coreset start, holdout split);
        the caller's global random generators are left alone.
    progress:
        Show progress bars (True), nothing (False), or send each
        :class:`~indad.progress.ProgressEvent` to this callable.
    """

    method: ClassVar[str] = ""
    default_strides: ClassVar[tuple[int, ...]] = ()

    backbone_name: str = "tf_efficientnet_lite0"
    _: KW_ONLY
    strides: tuple[int, ...] | list[int] | None = None
    image_size: int | tuple[int, int] | list[int] | str = 256
    crop_size: int | tuple[int, int] | list[int] | None = None
    resize: str = "stretch"
    tile: Tiling | dict[str, Any] | int | tuple[int, int] | list[int] | None = None
    roi: RoiSource | None = None
    blur_sigma: float = 4.0
    batch_size: int = 16
    device: str | torch.device = "auto"
    fp16: bool = False
    backbone_runtime: str = "onnxruntime"
    fit_runtime: str = "onnxruntime"
    weights: str | os.PathLike | None = None
    num_workers: int = 0
    seed: int = 0
    progress: Progress = True

    def __post_init__(self) -> None:
        if int(self.batch_size) < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        if float(self.blur_sigma) < 0:
            raise InputError(f"blur_sigma must be >= 0, got {self.blur_sigma}")
        for name in ("backbone_runtime", "fit_runtime"):
            if getattr(self, name) not in RUNTIMES:
                raise InputError(f"{name} must be one of {', '.join(RUNTIMES)}, got {getattr(self, name)!r}")
        check_backbone_name(self.backbone_name)
        self.strides = self.stage_strides
        self.crop_size = as_size(self.crop_size, "crop_size")
        self.blur_sigma = float(self.blur_sigma)
        self.batch_size = int(self.batch_size)
        self.device = resolve_device(self.device)
        self.fp16 = bool(self.fp16)
        self.num_workers = int(self.num_workers)
        self.seed = int(self.seed)
        self.progress = self.progress if callable(self.progress) else bool(self.progress)
        self.tile = Tiling.parse(self.tile)
        self._preprocess: Preprocess | None = None
        self.tile_grid: TileGrid | None = None
        self.roi_mask: torch.Tensor | None = None
        if self.image_size != NATIVE:
            size = as_size(self.image_size, "image_size")  # type: ignore[arg-type]
            assert size is not None
            self.set_working_size(size)
        self._backbone: Backbone | None = None
        self.module: nn.Module | None = None
        self.thresholds: Thresholds | None = None
        self.timings: dict[str, float] = {}
        # Version, parent, changes, training set fingerprint: see indad.lineage (the model file's header keeps it).
        self.provenance: dict[str, Any] = {}

    @property
    def stage_strides(self) -> tuple[int, ...]:
        """The strides of the backbone stages used: ``strides``, or the method's default."""
        return tuple(int(s) for s in (self.strides or self.default_strides))

    def set_working_size(self, size: tuple[int, int]) -> None:
        """Fix the working size: the preprocessing, the tiles and the region of interest follow it."""
        self.image_size = size
        crop, tile = (
            cast(tuple[int, int] | None, self.crop_size),
            cast(Tiling | None, self.tile),
        )  # as __post_init__ left them
        self._preprocess = Preprocess(size, crop, *backbone_normalization(self.backbone_name), self.resize)
        self.tile_grid = None if tile is None else TileGrid(self._preprocess.output_size, tile)
        if self.roi is not None:
            self.set_roi_mask(self._preprocess.mask(roi_mask(self.roi)))

    @property
    def preprocess(self) -> Preprocess:
        """How an image becomes a network input (with ``image_size="native"``, known once :meth:`fit` has begun)."""
        if self._preprocess is None:
            raise NotFittedError('image_size="native" is the first training image\'s size: call fit() first')
        return self._preprocess

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the network input: a tile's size, or the working size."""
        return self.preprocess.output_size if self.tile_grid is None else self.tile_grid.tiling.size

    @property
    def tiles_per_image(self) -> int:
        """Network inputs per image: the tiles of the working image (1 untiled)."""
        return 1 if self.tile_grid is None else self.tile_grid.count

    def images_per_batch(self, batch_size: int | None = None) -> int:
        """Images read per batch so that a forward pass sees about ``batch_size`` network inputs (at least 1 image)."""
        return max(1, (batch_size or self.batch_size) // self.tiles_per_image)

    def set_roi_mask(self, mask: torch.Tensor) -> None:
        """Set the region of interest: a bool mask of the working size (True = inspect)."""
        if tuple(mask.shape) != self.preprocess.output_size:
            raise InputError(f"an ROI mask must be {self.preprocess.output_size}, got {tuple(mask.shape)}")
        if not bool(mask.any()):
            raise InputError("the region of interest inspects nothing at the working size")
        self.roi_mask = mask.bool().to(self.device)

    @property
    def backbone(self) -> Backbone:
        """The frozen feature extractor, built (weights loaded) on first use, running on :attr:`backbone_runtime`."""
        if self._backbone is None:
            self._backbone = Backbone(self.backbone_name, self.stage_strides, weights=self.weights, fp16=self.fp16).to(
                self.device
            )
        self._backbone.runtime = self.backbone_runtime
        return self._backbone

    def fit_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's feature maps of a normalised batch, its forward pass on :attr:`fit_runtime`."""
        backbone = self.backbone
        backbone.runtime = self.fit_runtime
        try:
            return backbone(images)
        finally:
            backbone.runtime = self.backbone_runtime

    # ----------------------------------------------------------------- hyperparameters
    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """Every constructor parameter (the keys a config may set) with its default."""
        return {f.name: f.default for f in dataclasses.fields(cls) if f.init and f.name != "_"}

    def hparams(self) -> dict[str, Any]:
        """Every constructor parameter with its value, as plain data."""
        out: dict[str, Any] = {}
        for name in self.param_defaults():
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, (torch.device, os.PathLike)):
                value = str(value)
            elif isinstance(value, Tiling):
                value = value.to_dict()
            elif isinstance(value, np.ndarray):  # an ROI given as an array: the model file keeps the mask itself
                value = f"<array {value.shape[0]}x{value.shape[1]}>"
            elif name == "progress":
                value = bool(value)  # a callback is not plain data
            out[name] = value
        return out

    def metadata(self) -> dict[str, Any]:
        """What the fitted model is, as plain data: method, parameters, backbone, preprocessing, thresholds.

        Model files and exported graphs carry it; it holds everything needed to
        rebuild the model from its :meth:`to_state` tensors but where it runs
        (:data:`RUNTIME_PARAMS`).
        """
        backbone = self.backbone
        return {
            "indad_version": __version__,
            "method": self.method,
            "hparams": {k: v for k, v in self.hparams().items() if k not in RUNTIME_PARAMS},
            "backbone": {
                "name": self.backbone_name,
                "fingerprint": backbone.fingerprint,
                "weights_source": backbone.weights_source,
            },
            "preprocess": self.preprocess.to_dict(),
            "thresholds": None if self.thresholds is None else self.thresholds.to_dict(),
            "state": self.to_state().meta,
            **{k: v for k, v in self.provenance.items() if not k.startswith("_")},
        }

    # ----------------------------------------------------------------- data
    def iter_batches(self, data: Any, split: str, desc: str, batch_size: int | None = None) -> Iterator[Batch]:
        """Batches of ``data`` (any form :meth:`fit` takes) with the images on the model's device.

        ``split`` (``"train"`` or ``"test"``) is read from a dataset folder in
        MVTec AD layout; ``desc`` names the progress bar.
        """
        if isinstance(data, torch.Tensor):
            if data.ndim != 4 or data.shape[1] != 3:
                raise InputError(f"a tensor input must be a normalised batch (B, 3, H, W), got {tuple(data.shape)}")
            offset = 0
            for chunk in data.split(self.images_per_batch(batch_size)):
                n = chunk.shape[0]
                yield {"image": chunk.to(self.device), "path": [f"<tensor {offset + i}>" for i in range(n)]}
                offset += n
            return
        loader = make_loader(data, self.preprocess, split, self.images_per_batch(batch_size), self.num_workers)
        total = len(loader) if isinstance(loader, Sized) else None
        # A thread (or the loader's worker processes) reads the next batches while this one is scored.
        for batch in track(read_ahead(loader), desc, total, self.progress):
            if isinstance(batch, (list, tuple)):  # a plain (images, ...) DataLoader
                batch = {"image": batch[0]}
            batch["image"] = batch["image"].to(self.device, non_blocking=True)
            yield batch

    def fit_batches(self, data: Any, desc: str) -> Iterator[Batch]:
        """The batches :meth:`partial_fit_state` and :meth:`extend_state` take: normal images (as tiles when tiled).

        A batch's ``image`` is then ``(B * tiles_per_image, 3, th, tw)``, each image's tiles together.
        """
        for batch in self.iter_batches(data, "train", desc):
            if self.tile_grid is not None:
                batch["image"] = self.tile_grid.split(batch["image"])
            yield batch

    def scoring_module(self, exportable: bool = False) -> nn.Module:
        """The fitted scoring module over whole working images: :meth:`build_module`, tiled and masked if asked."""
        module = self.build_module(exportable)
        if self.tile_grid is None and self.roi_mask is None:
            return module
        grid = None if self.tile_grid is None else self.tile_grid.to(self.device)
        return WholeImageModule(module, grid, self.roi_mask)

    # ----------------------------------------------------------------- fit / predict
    def fit(self, data: Any, holdout: float = 0.0, quantile: float = 0.99, engine: Any = None) -> AnomalyModel:
        """Learn what normal looks like from good images.

        ``data`` is a dataset folder in MVTec AD layout (its ``train/good`` is
        used), a folder of images, a list of image paths, PIL images or arrays, an
        :class:`~indad.data.AnomalyDataset`, a DataLoader or a normalised tensor.
        With ``holdout`` > 0 that share of the images (a folder or a list of
        paths) is set aside at random (seeded) and the thresholds are calibrated
        on it with :meth:`calibrate` and ``quantile``. ``engine`` (e.g.
        :class:`~indad.distributed.RayEngine`) computes the shards' parts elsewhere.
        """
        start = time.perf_counter()
        if self._preprocess is None:  # image_size="native"
            self.set_working_size(first_image_size(data))
        calibration = None
        self.provenance = {"training_set": describe_training_set(train_paths(data))} if is_paths(data) else {}
        note_change(self.provenance, fitted=True)
        if holdout:
            data, calibration = split_holdout(data, holdout, self.seed)
        self.timings = {}
        self.thresholds = None
        with torch.inference_mode():
            if engine is None:
                parts = [self.partial_fit_state(self.fit_batches(data, f"{self.method}: features"), 1)]
            else:
                parts = engine.partial_fits(self, data)
            self.merge_states(parts)
        self.module = self.scoring_module().eval()
        self.timings["fit_s"] = time.perf_counter() - start
        if calibration is not None:
            self.calibrate(calibration, quantile)
        return self

    def calibrate(self, good_images: Any, quantile: float = 0.99) -> Thresholds:
        """Set the thresholds from images of good parts not used in fit.

        See :func:`~indad.thresholds.good_quantile_thresholds`.
        """
        pred = self.predict(good_images)
        before = self.thresholds
        self.thresholds = good_quantile_thresholds(pred.scores, pred.maps, quantile)
        self.provenance["score_reference"] = score_reference(pred.scores)
        self._note_thresholds(before)
        return self.thresholds

    def _note_thresholds(self, before: Thresholds | None) -> None:
        """Record a change of thresholds for the next saved version (see :mod:`indad.lineage`)."""
        after = None if self.thresholds is None else self.thresholds.to_dict()
        note_change(self.provenance, thresholds_before=None if before is None else before.to_dict())
        note_change(self.provenance, thresholds_after=after)

    def calibrate_f1(self, validation: Any) -> Thresholds:
        """Set F1-optimal image and pixel thresholds on a labelled validation set (a folder in MVTec AD layout)."""
        scores, labels, masks, maps = [], [], [], []
        for batch, s, m in self._scored_batches(
            validation, f"{self.method}: calibrate", None, labelled_for="F1 calibration"
        ):
            scores.append(s)
            labels.append(np.asarray(batch["label"]))
            keep = np.asarray(batch["has_mask"], dtype=bool) | (np.asarray(batch["label"]) == 0)
            masks.append(batch["mask"].numpy()[keep])
            maps.append(m[keep])
        before = self.thresholds
        self.thresholds = f1_thresholds(
            np.concatenate(labels), np.concatenate(scores), np.concatenate(masks), np.concatenate(maps)
        )
        self._note_thresholds(before)
        return self.thresholds

    def add_normal(self, images: Any) -> AnomalyModel:
        """Add good images to the fitted model without refitting on the old ones; thresholds are kept."""
        self.require_fitted()
        with torch.inference_mode():
            self.extend_state(self.fit_batches(images, f"{self.method}: add normal"))
        self.module = self.scoring_module().eval()
        note_change(self.provenance, images_added=count_images(images))
        return self

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model to one file (safetensors, no pickle); see :func:`indad.load`."""
        from ..export.model_file import write_model_file

        self.require_fitted()
        stamp(self.provenance)
        return write_model_file(path, self.file_tensors(), self.metadata())

    def file_tensors(self) -> Tensors:
        """What a model file holds: the :meth:`to_state` tensors, and ``roi_mask`` with a region of interest."""
        tensors = dict(self.to_state().tensors)
        if self.roi_mask is not None:
            tensors[ROI_TENSOR] = self.roi_mask
        return tensors

    def require_fitted(self) -> nn.Module:
        """The fitted scoring module; :class:`~indad.errors.NotFittedError` before :meth:`fit`."""
        if self.module is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() first")
        return self.module

    # ----------------------------------------------------------------- the method protocol
    @abstractmethod
    def partial_fit_state(self, batches: Iterable[Batch], shards: int) -> Tensors:
        """What one of ``shards`` disjoint parts of the normal images contributes to the state.

        ``batches`` hold that part's images; the tensors returned go to
        :meth:`merge_states`, possibly from another process.
        """

    @abstractmethod
    def merge_states(self, parts: list[Tensors]) -> None:
        """Set the fitted state from every shard's :meth:`partial_fit_state`, in shard order (parts may be reused)."""

    @abstractmethod
    def extend_state(self, batches: Iterable[Batch]) -> None:
        """Extend the fitted state with batches of further normal images."""

    @abstractmethod
    def to_state(self) -> ModelState:
        """The fitted state: tensors and plain values, enough for :meth:`from_state`."""

    @abstractmethod
    def from_state(self, state: ModelState) -> None:
        """Restore what :meth:`to_state` returned (tensors on the model's device)."""

    @abstractmethod
    def build_module(self, exportable: bool = False) -> nn.Module:
        """The fitted module of network inputs ``(B, 3, h, w)`` -> (scores ``(B,)``, maps ``(B, h, w)``).

        Network inputs are tiles when tiled: a batch then holds whole images' tiles in :meth:`fit_batches`'
        order. :meth:`scoring_module` wraps it for whole images.

        ``exportable``: only torch operations (no faiss), with loop bounds that do
        not depend on the batch size, for ONNX and TorchScript export.
        """

    # ----------------------------------------------------------------- scoring
    def _scored_batches(
        self, data: Any, desc: str, batch_size: int | None, labelled_for: str | None = None
    ) -> Iterator[tuple[Batch, np.ndarray, np.ndarray]]:
        """Each batch of ``data`` (test split) with its image scores ``(B,)`` and anomaly maps ``(B, H, W)``.

        ``labelled_for`` names the task that needs labels: unlabelled data is then refused.
        """
        self.require_fitted()
        for batch in self.iter_batches(data, "test", desc, batch_size):
            if labelled_for and ("label" not in batch or bool((np.asarray(batch["label"]) < 0).any())):
                raise InputError(f"{labelled_for} needs labelled data: a dataset folder in MVTec AD layout")
            yield (batch, *self.score_batch(batch["image"]))

    def score_batch(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Image scores ``(B,)`` and anomaly maps ``(B, H, W)`` (float32 numpy) of a normalised batch.

        A tiled model scores :meth:`images_per_batch` images at a time.
        """
        module = self.require_fitted()
        scores, maps = [], []
        with torch.inference_mode():
            for chunk in images.split(max(1, len(images)) if self.tile_grid is None else self.images_per_batch()):
                s, m = module(chunk.to(self.device))
                scores.append(s.float().cpu().numpy())
                maps.append(m.float().cpu().numpy())
        return np.concatenate(scores), np.concatenate(maps)

    def predict(self, images: Any, batch_size: int | None = None) -> Prediction:
        """Image scores and anomaly maps.

        ``images`` takes the same forms as :meth:`fit`; a dataset folder in MVTec
        AD layout is read from its ``test`` split.
        """
        scores, maps, paths = [], [], []
        for batch, s, m in self._scored_batches(images, f"{self.method}: predict", batch_size):
            scores.append(s)
            maps.append(m)
            paths += list(batch.get("path", []))
        return Prediction(np.concatenate(scores), np.concatenate(maps), paths, self.thresholds)

    def evaluate(self, data: Any, batch_size: int | None = None, keep_maps: bool = False) -> dict[str, Any]:
        """Metrics on a labelled test set (a dataset folder in MVTec AD layout, or its test dataset).

        Returns a dict with ``image_auroc``, ``pixel_auroc``, ``aupro``, ``f1_max``,
        ``f1_threshold``, per-defect image ROC AUC, counts, and the per-image
        ``scores``, ``labels``, ``defects`` and ``paths``; with ``keep_maps`` also
        ``maps``, the ``(N, H, W)`` anomaly maps.
        """
        scores, labels, defects, paths = [], [], [], []
        masks, maps, all_maps = [], [], []
        start = time.perf_counter()
        for batch, s, m in self._scored_batches(data, f"{self.method}: evaluate", batch_size, labelled_for="evaluate"):
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

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())
        return f"{type(self).__name__}({args})"
