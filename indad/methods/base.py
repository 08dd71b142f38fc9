"""What every method shares: parameters, inputs, batching, devices, fit, predict, evaluate and save.

A method is a dataclass of its hyperparameters (each one explicit in its
signature) that implements the method protocol (:mod:`.protocol`). The base
class feeds it: :meth:`AnomalyModel.fit_batches` (images cut into tiles when
tiled) and :meth:`AnomalyModel.scoring_module` (the method's module over whole
images: tiles stitched, the region of interest applied).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..backbones import RUNTIMES, Backbone, backbone_normalization, check_backbone_name, resolve_device
from ..data import Preprocess, device_batches, first_image_size, split_holdout, train_paths
from ..data.geometry import ImageGeometry
from ..data.layout import is_paths
from ..data.tiles import TileGrid, Tiling
from ..data.transforms import RESIZE_MODES, as_size
from ..errors import InputError, NotFittedError
from ..lineage import count_images, describe_training_set, note_change, note_thresholds, score_reference, stamp
from ..progress import Progress
from ..roi import RoiSource, roi_mask
from ..thresholds import Thresholds, good_quantile_thresholds
from ..version import __version__
from . import evaluation
from .params import Rule, check_params, class_rules, plain_value
from .prediction import Prediction
from .protocol import Batch, MethodProtocol, ModelState, Tensors
from .robust import RobustInputs
from .whole_image import WholeImageModule

# Constructor parameters that say where a model runs, not what it is: not stored in a model file.
RUNTIME_PARAMS = ("device", "progress", "weights", "num_workers")
NATIVE = "native"
"""``image_size`` of a model working at its training images' own size."""
ROI_TENSOR = "roi_mask"
"""The model file's tensor of the region of interest (bool, working size)."""


@dataclass(eq=False, repr=False)
class AnomalyModel(RobustInputs, MethodProtocol):
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
        None (the working image is the network input), or tiles of the working image: ``{"size": 256,
        "overlap": 32}`` (or just the size). Fit and scoring see every tile; maps are stitched back, overlaps
        averaged, and the image score is the stitched map's maximum (see :mod:`~indad.data.tiles`).
    roi:
        Region of interest: a mask picture (white = inspect, any size), ``{"polygons": [[[x, y], ...]],
        "size": [width, height]}`` or a bool array (see :mod:`~indad.roi`). Outside it the anomaly map is 0
        and the image score is the map's maximum. The model file and exports keep it.
    blur_sigma:
        Gaussian blur of the anomaly maps, in pixels.
    batch_size:
        Images per forward pass.
    device:
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``...
    fp16:
        Half-precision backbone on CUDA.
    backbone_runtime:
        Runtime of the backbone's forward pass when scoring. ``"onnxruntime"``: on the CPU through ONNX Runtime
        (the same network, exported in memory, checked against torch on first use: features within 1e-4); torch
        on CUDA and in exports. ``"torch"``: eager torch everywhere (the exact previous path).
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
    variation, variation_copies, photometric, align, align_motion:
        What a line varies and how the model copes: see :class:`~indad.methods.robust.RobustInputs`.
    """

    method: ClassVar[str] = ""
    default_strides: ClassVar[tuple[int, ...]] = ()
    rules: ClassVar[dict[str, Rule]] = {
        "resize": Rule(choices=RESIZE_MODES),
        "blur_sigma": Rule(float, low=0),
        "batch_size": Rule(int, low=1),
        "fp16": Rule(bool),
        "backbone_runtime": Rule(choices=RUNTIMES),
        "fit_runtime": Rule(choices=RUNTIMES),
        "num_workers": Rule(int, low=0),
        "seed": Rule(int),
    }
    """The constraints of the scalar hyperparameters; each subclass adds its own (see :meth:`param_rules`)."""

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
        check_params(self, self.param_rules())
        self.check_robust_inputs()
        check_backbone_name(self.backbone_name)
        self.device = resolve_device(self.device)
        self.progress = self.progress if callable(self.progress) else bool(self.progress)
        self.tiling: Tiling | None = Tiling.parse(self.tile)
        self.crop: tuple[int, int] | None = as_size(self.crop_size, "crop_size")
        self.geometry: ImageGeometry | None = None
        if self.image_size != NATIVE:
            size = as_size(self.image_size, "image_size")  # type: ignore[arg-type]
            assert size is not None
            self.set_working_size(size)
        self._backbone: Backbone | None = None
        self.module: nn.Module | None = None
        self.thresholds: Thresholds | None = None
        self.timings: dict[str, float] = {}
        self.provenance: dict[str, Any] = {}  # version, parent, changes, training set: see indad.lineage

    @classmethod
    def param_rules(cls) -> dict[str, Rule]:
        """Every scalar hyperparameter's :class:`~indad.methods.params.Rule`: the base class's, then each subclass's."""
        return class_rules(cls)

    @property
    def stage_strides(self) -> tuple[int, ...]:
        """The strides of the backbone stages used: ``strides``, or the method's default."""
        return tuple(int(s) for s in (self.strides or self.default_strides))

    def set_working_size(self, size: tuple[int, int]) -> None:
        """Fix the working size: the preprocessing, the tiles and the region of interest follow it."""
        normalization = backbone_normalization(self.backbone_name)
        self.geometry = ImageGeometry.build(size, self.crop, normalization, self.resize, self.tiling)
        if self.roi is not None:
            self.set_roi_mask(self.geometry.preprocess.mask(roi_mask(self.roi)))

    def _geometry(self) -> ImageGeometry:
        if self.geometry is None:
            raise NotFittedError('image_size="native" is the first training image\'s size: call fit() first')
        return self.geometry

    @property
    def working_size(self) -> tuple[int, int]:
        """``(H, W)`` of the working image: ``image_size`` (after the crop), or with ``"native"`` the size fit found."""
        return self._geometry().working_size

    @property
    def preprocess(self) -> Preprocess:
        """How an image becomes a network input (with ``image_size="native"``, known once :meth:`fit` has begun)."""
        return self._geometry().preprocess

    @property
    def tile_grid(self) -> TileGrid | None:
        """The tiles of the working image (None untiled)."""
        return self._geometry().tile_grid

    @property
    def roi_mask(self) -> torch.Tensor | None:
        """The region of interest at the working size (bool, on the model's device; None: everything)."""
        return None if self.geometry is None else self.geometry.roi_mask

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the network input: a tile's size, or the working size."""
        return self._geometry().input_size

    @property
    def tiles_per_image(self) -> int:
        """Network inputs per image: the tiles of the working image (1 untiled)."""
        return self._geometry().tiles_per_image

    def images_per_batch(self, batch_size: int | None = None) -> int:
        """Images read per batch so that a forward pass sees about ``batch_size`` network inputs (at least 1 image)."""
        return self._geometry().images_per_batch(batch_size or self.batch_size)

    def set_roi_mask(self, mask: torch.Tensor) -> None:
        """Set the region of interest: a bool mask of the working size (True = inspect)."""
        self.geometry = self._geometry().with_roi(mask.to(self.device))

    @property
    def backbone(self) -> Backbone:
        """The frozen feature extractor, built (weights loaded) on first use.

        Each call names its runtime: the scoring modules :attr:`backbone_runtime`,
        :meth:`fit_features` :attr:`fit_runtime`.
        """
        if self._backbone is None:
            self._backbone = Backbone(self.backbone_name, self.stage_strides, weights=self.weights, fp16=self.fp16).to(
                self.device
            )
        return self._backbone

    @property
    def splits_tiles(self) -> bool:
        """Whether fit and scoring cut the working image into its tiles (tiled; a method may chunk it instead)."""
        return self.tile_grid is not None

    def fit_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's feature maps of a normalised batch, its forward pass on :attr:`fit_runtime`."""
        return self.backbone(images, self.fit_runtime)

    # ----------------------------------------------------------------- hyperparameters
    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """Every constructor parameter (the keys a config may set) with its default."""
        return {f.name: f.default for f in dataclasses.fields(cls) if f.init and f.name != "_"}

    def hparams(self) -> dict[str, Any]:
        """Every constructor parameter with its value, as plain data.

        Sizes and tiles in their checked form (``[H, W]``, ``{size, overlap}``), the strides those used, and
        ``image_size="native"`` once fitted the size fit found: a model file is rebuilt the same whatever the
        defaults become.
        """
        out = {name: plain_value(getattr(self, name)) for name in self.param_defaults()}
        out["strides"] = list(self.stage_strides)
        out["crop_size"] = None if self.crop is None else list(self.crop)
        out["tile"] = None if self.tiling is None else self.tiling.to_dict()
        if self.image_size != NATIVE:
            out["image_size"] = list(as_size(self.image_size, "image_size") or ())  # type: ignore[arg-type]
        elif self.geometry is not None:
            out["image_size"] = list(self.geometry.preprocess.resize)
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
        MVTec AD layout; ``desc`` names the progress bar (see :func:`~indad.data.device_batches`).
        """
        yield from device_batches(
            data, self.preprocess, split, self.images_per_batch(batch_size), self.num_workers, self.device,
            desc, self.progress,
        )  # fmt: skip

    def fit_batches(self, data: Any, desc: str) -> Iterator[Batch]:
        """Batches of normal images for :meth:`partial_fit_state`; :attr:`splits_tiles`: ``(B * tiles, 3, th, tw)``."""
        for read in self.iter_batches(data, "train", desc):
            for batch in self.fit_variants(read, self.preprocess, self.seed):  # aligned, standardised, changed copies
                if self.tile_grid is not None and self.splits_tiles:
                    batch["image"] = self.tile_grid.split(batch["image"])
                yield batch

    def scoring_module(self, exportable: bool = False) -> nn.Module:
        """The fitted scoring module over whole working images: :meth:`build_module`, tiled and masked if asked."""
        module = self.build_module(exportable)
        if self.splits_tiles or self.roi_mask is not None:
            grid = None if self.tile_grid is None or not self.splits_tiles else self.tile_grid.to(self.device)
            module = WholeImageModule(module, grid, self.roi_mask)
        return self.standardized(module, self.preprocess, exportable, self.device)

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
        if self.geometry is None:  # image_size="native"
            self.set_working_size(first_image_size(data))
        calibration = None
        self.provenance = {"training_set": describe_training_set(train_paths(data))} if is_paths(data) else {}
        note_change(self.provenance, fitted=True)
        if holdout:
            data, calibration = split_holdout(data, holdout, self.seed)
        if self.align != "none":  # the first training image is the reference
            first = next(self.iter_batches(data, "train", "reference", 1))["image"][0]
            self.take_align_reference(first, self.preprocess)
        self.timings = {}
        self.thresholds = None
        with torch.inference_mode():
            if engine is None:
                parts = [self.partial_fit_state(self.fit_batches(data, f"{self.method}: features"), 1)]
            else:
                parts = engine.partial_fits(self, data)
            self.merge_states(parts)
        self.rebuild()
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
        note_thresholds(self.provenance, before, self.thresholds)
        return self.thresholds

    def calibrate_f1(self, validation: Any) -> Thresholds:
        """Set F1-optimal image and pixel thresholds on a labelled validation set (a folder in MVTec AD layout)."""
        before = self.thresholds
        self.thresholds = evaluation.calibrate_f1(self, validation)
        note_thresholds(self.provenance, before, self.thresholds)
        return self.thresholds

    def add_normal(self, images: Any) -> AnomalyModel:
        """Add good images to the fitted model without refitting on the old ones; thresholds are kept."""
        self.require_fitted()
        with torch.inference_mode():
            self.extend_state(self.fit_batches(images, f"{self.method}: add normal"))
        self.rebuild()
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
        tensors = dict(self.to_state().tensors) | self.robust_tensors()
        if self.roi_mask is not None:
            tensors[ROI_TENSOR] = self.roi_mask
        return tensors

    def rebuild(self) -> nn.Module:
        """Build the scoring module (:meth:`scoring_module`) from the fitted state again, and return it.

        The one way to refresh :attr:`module` after the state, the tiles or the region of interest changed.
        """
        self.module = self.scoring_module().eval()
        return self.module

    def restore(self, state: ModelState, roi_mask: torch.Tensor | None = None) -> AnomalyModel:
        """Set the fitted state (and the region of interest's mask) from a model file's, ready to score."""
        if roi_mask is not None:
            self.set_roi_mask(roi_mask)
        self.from_state(state)
        self.rebuild()
        return self

    def require_fitted(self) -> nn.Module:
        """The fitted scoring module; :class:`~indad.errors.NotFittedError` before :meth:`fit`."""
        if self.module is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() first")
        return self.module

    # ----------------------------------------------------------------- scoring
    def scored_batches(
        self, data: Any, desc: str, batch_size: int | None = None, labelled_for: str | None = None
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
                aligned, motions = self.to_reference(chunk.to(self.device), self.preprocess)
                s, m = module(aligned)
                scores.append(s.float().cpu().numpy())
                maps.append(self.from_reference(m, motions).float().cpu().numpy())
        return np.concatenate(scores), np.concatenate(maps)

    def predict(self, images: Any, batch_size: int | None = None) -> Prediction:
        """Image scores and anomaly maps.

        ``images`` takes the same forms as :meth:`fit`; a dataset folder in MVTec
        AD layout is read from its ``test`` split.
        """
        scores, maps, paths = [], [], []
        for batch, s, m in self.scored_batches(images, f"{self.method}: predict", batch_size):
            scores.append(s)
            maps.append(m)
            paths += list(batch.get("path", []))
        return Prediction(np.concatenate(scores), np.concatenate(maps), paths, self.thresholds)

    def evaluate(self, data: Any, batch_size: int | None = None, keep_maps: bool = False) -> dict[str, Any]:
        """Metrics on a labelled test set; see :func:`indad.methods.evaluation.evaluate`."""
        return evaluation.evaluate(self, data, batch_size, keep_maps)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())
        return f"{type(self).__name__}({args})"
