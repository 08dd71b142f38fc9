"""What every method shares: inputs, batching, devices, predict and evaluate."""

from __future__ import annotations

import inspect
import os
import random
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from ..backbones import Backbone, resolve_device
from ..data import Preprocess, make_loader, split_holdout
from ..data.transforms import as_size
from ..metrics import evaluate_predictions
from ..progress import Progress, track
from ..thresholds import Thresholds, f1_thresholds, good_quantile_thresholds



class NotFittedError(RuntimeError):
    """predict or evaluate called before fit."""


class NotCalibratedError(RuntimeError):
    """A decision asked of a model without thresholds."""


@dataclass
class Prediction:
    """Scores of a set of images.

    Attributes
    ----------
    scores:
        ``(N,)`` image anomaly scores (higher is more anomalous).
    maps:
        ``(N, H, W)`` pixel anomaly maps at the network input size.
    paths:
        Source of each image (file path, or ``<image i>`` for in-memory images).
    """

    scores: np.ndarray
    maps: np.ndarray
    paths: list[str] = field(default_factory=list)
    thresholds: Thresholds | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def _require_thresholds(self) -> Thresholds:
        if self.thresholds is None:
            raise NotCalibratedError("the model has no thresholds: fit(..., holdout=0.1) or calibrate() first")
        return self.thresholds

    @property
    def normalized_scores(self) -> np.ndarray:
        """``(N,)`` scores divided by the image threshold: 1.0 at the threshold."""
        return self.scores / self._require_thresholds().image

    @property
    def is_defective(self) -> np.ndarray:
        """``(N,)`` bool: score at or above the image threshold."""
        return self.scores >= self._require_thresholds().image

    @property
    def masks(self) -> np.ndarray:
        """``(N, H, W)`` bool: anomaly map at or above the pixel threshold."""
        return self.maps >= self._require_thresholds().pixel


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class AnomalyModel(ABC):
    """An anomaly detector fitted on good images only.

    Subclasses set :attr:`method`, :attr:`default_strides` and implement
    :meth:`_partial_fit` (what one shard of the training images contributes),
    :meth:`_merge_partials` (the method's state from every shard's part) and
    :meth:`_build_module` (the plain ``nn.Module`` that scores a normalised batch).
    Fitting in one process is the case of a single shard.

    Parameters
    ----------
    backbone_name:
        timm model name. The ``tf_efficientnet_lite0/1/2`` backbones work offline.
    strides:
        Output strides of the backbone stages the method uses.
    image_size:
        Every image is resized to this size (int or ``(H, W)``).
    crop_size:
        Optional centre crop after resizing.
    blur_sigma:
        Gaussian blur of the anomaly maps, in pixels.
    batch_size:
        Images per forward pass.
    device:
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``...
    fp16:
        Half-precision backbone on CUDA.
    weights:
        Explicit backbone weight file (else timm cache, hub, PyPI packages).
    num_workers:
        DataLoader worker processes for reading images.
    seed:
        Seeds every random choice (projections, coreset start).
    progress:
        Show progress bars (True), nothing (False), or send each
        :class:`~indad.progress.ProgressEvent` to this callable.
    """

    method: ClassVar[str] = ""
    default_strides: ClassVar[tuple[int, ...]] = ()

    def __init__(
        self,
        backbone_name: str = "tf_efficientnet_lite0",
        strides: tuple[int, ...] | list[int] | None = None,
        image_size: int | tuple[int, int] = 256,
        crop_size: int | tuple[int, int] | None = None,
        blur_sigma: float = 4.0,
        batch_size: int = 16,
        device: str = "auto",
        fp16: bool = False,
        weights: str | os.PathLike | None = None,
        num_workers: int = 0,
        seed: int = 0,
        progress: Progress = True,
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if float(blur_sigma) < 0:
            raise ValueError(f"blur_sigma must be >= 0, got {blur_sigma}")
        self.backbone_name = backbone_name
        self.strides = tuple(int(s) for s in (strides or self.default_strides))
        self.image_size = as_size(image_size, "image_size")
        self.crop_size = as_size(crop_size, "crop_size")
        self.blur_sigma = float(blur_sigma)
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        self.fp16 = bool(fp16)
        self.weights = weights
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.progress = progress if callable(progress) else bool(progress)
        self.backbone = Backbone(backbone_name, self.strides, weights=weights, fp16=fp16).to(self.device)
        self.preprocess = Preprocess(self.image_size, self.crop_size, self.backbone.mean, self.backbone.std)
        self.module: nn.Module | None = None
        self.thresholds: Thresholds | None = None
        self.timings: dict[str, float] = {}

    # ----------------------------------------------------------------- hyperparameters
    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """Every constructor parameter (the keys a config may set) with its default."""
        defaults: dict[str, Any] = {}
        for klass in cls.__mro__:
            if klass is object or "__init__" not in vars(klass):
                continue
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in defaults:
                    defaults[p.name] = p.default
        return defaults

    def hparams(self) -> dict[str, Any]:
        """Every constructor parameter with its value, as plain data."""
        out: dict[str, Any] = {}
        for name in self.param_defaults():
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, (torch.device, os.PathLike)):
                value = str(value)
            elif name == "progress":
                value = bool(value)  # a callback is not plain data
            out[name] = value
        return out

    # ----------------------------------------------------------------- data
    def _batches(self, data, split: str, desc: str, batch_size: int | None = None) -> Iterator[dict]:
        """Batches of ``data`` with the images on the model's device and a progress bar."""
        if isinstance(data, torch.Tensor):
            if data.ndim != 4 or data.shape[1] != 3:
                raise ValueError(f"a tensor input must be a normalised batch (B, 3, H, W), got {tuple(data.shape)}")
            offset = 0
            for chunk in data.split(batch_size or self.batch_size):
                n = chunk.shape[0]
                yield {"image": chunk.to(self.device), "path": [f"<tensor {offset + i}>" for i in range(n)]}
                offset += n
            return
        loader = make_loader(data, self.preprocess, split, batch_size or self.batch_size, self.num_workers)
        total = len(loader) if hasattr(loader, "__len__") else None
        for batch in track(loader, desc, total, self.progress):
            if isinstance(batch, (list, tuple)):  # a plain (images, ...) DataLoader
                batch = {"image": batch[0]}
            batch["image"] = batch["image"].to(self.device, non_blocking=True)
            yield batch

    # ----------------------------------------------------------------- fit / predict
    def fit(self, data, holdout: float = 0.0, quantile: float = 0.99, engine=None) -> "AnomalyModel":
        """Learn what normal looks like from good images.

        ``data`` is a dataset folder in MVTec AD layout (its ``train/good`` is
        used), a folder of images, a list of image paths, PIL images or arrays, an
        :class:`~indad.data.AnomalyDataset`, a DataLoader or a normalised tensor.
        With ``holdout`` > 0 that share of the images (a folder or a list of
        paths) is set aside at random (seeded) and the thresholds are calibrated
        on it with :meth:`calibrate` and ``quantile``.
        """
        seed_everything(self.seed)
        start = time.perf_counter()
        calibration = None
        if holdout:
            data, calibration = split_holdout(data, holdout, self.seed)
        self.timings = {}
        self.thresholds = None
        with torch.inference_mode():
            if engine is None:
                self._merge_partials([self._partial_fit(self._batches(data, "train", f"{self.method}: features"), 1)])
            else:
                self._merge_partials(engine.partial_fits(self, data))
        self.module = self._build_module().eval()
        self.timings["fit_s"] = time.perf_counter() - start
        if calibration is not None:
            self.calibrate(calibration, quantile)
        return self

    def calibrate(self, good_images, quantile: float = 0.99) -> Thresholds:
        """Set the thresholds from images of good parts not used in fit (:func:`~indad.thresholds.good_quantile_thresholds`)."""
        pred = self.predict(good_images)
        self.thresholds = good_quantile_thresholds(pred.scores, pred.maps, quantile)
        return self.thresholds

    def calibrate_f1(self, validation) -> Thresholds:
        """Set F1-optimal image and pixel thresholds on a labelled validation set (a folder in MVTec AD layout)."""
        scores, labels, masks, maps = [], [], [], []
        for batch, s, m in self._scored_batches(validation, f"{self.method}: calibrate", None,
                                                labelled_for="F1 calibration"):
            scores.append(s)
            labels.append(np.asarray(batch["label"]))
            keep = np.asarray(batch["has_mask"], dtype=bool) | (np.asarray(batch["label"]) == 0)
            masks.append(batch["mask"].numpy()[keep])
            maps.append(m[keep])
        self.thresholds = f1_thresholds(np.concatenate(labels), np.concatenate(scores), np.concatenate(masks),
                                        np.concatenate(maps))
        return self.thresholds

    def add_normal(self, images) -> "AnomalyModel":
        """Add good images to the fitted model without refitting on the old ones; thresholds are kept."""
        self._require_fitted()
        seed_everything(self.seed)
        with torch.inference_mode():
            self._add_normal(self._batches(images, "train", f"{self.method}: add normal"))
        self.module = self._build_module().eval()
        return self

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model to one file (safetensors, no pickle); see :func:`indad.load`."""
        from ..export.model_file import save_model

        return save_model(self, path)

    @abstractmethod
    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The fitted state: tensors and plain values, enough for :meth:`_load_state`."""

    @abstractmethod
    def _load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore what :meth:`_state` returned (tensors on the model's device)."""

    @abstractmethod
    def _add_normal(self, batches: Iterable[dict]) -> None:
        """Extend the fitted state with batches of further normal images."""

    @abstractmethod
    def _partial_fit(self, batches: Iterable[dict], shards: int) -> dict[str, torch.Tensor]:
        """What one of ``shards`` disjoint parts of the normal images contributes to the state.

        ``batches`` hold that part's images (``batch["image"]`` on the device); the
        tensors returned go to :meth:`_merge_partials`, possibly from another process.
        """

    @abstractmethod
    def _merge_partials(self, partials: list[dict[str, torch.Tensor]]) -> None:
        """Set the fitted state from every shard's :meth:`_partial_fit`, in shard order (the parts may be reused)."""

    @abstractmethod
    def _build_module(self, exportable: bool = False) -> nn.Module:
        """The fitted scoring module: normalised images ``(B, 3, H, W)`` -> (scores ``(B,)``, maps ``(B, H, W)``).

        ``exportable``: only torch operations (no faiss), with loop bounds that do
        not depend on the batch size, for ONNX and TorchScript export.
        """

    def _require_fitted(self) -> nn.Module:
        if self.module is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() first")
        return self.module

    def _scored_batches(self, data, desc: str, batch_size: int | None,
                        labelled_for: str | None = None) -> Iterator[tuple[dict, np.ndarray, np.ndarray]]:
        """Each batch of ``data`` (test split) with its image scores ``(B,)`` and anomaly maps ``(B, H, W)``.

        ``labelled_for`` names the task that needs labels: unlabelled data is then refused.
        """
        self._require_fitted()
        for batch in self._batches(data, "test", desc, batch_size):
            if labelled_for and ("label" not in batch or bool((np.asarray(batch["label"]) < 0).any())):
                raise ValueError(f"{labelled_for} needs labelled data: a dataset folder in MVTec AD layout")
            yield (batch, *self.score_batch(batch["image"]))

    def score_batch(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Image scores ``(B,)`` and anomaly maps ``(B, H, W)`` (float32 numpy) of a normalised batch."""
        module = self._require_fitted()
        with torch.inference_mode():
            scores, maps = module(images.to(self.device))
        return scores.float().cpu().numpy(), maps.float().cpu().numpy()

    def predict(self, images, batch_size: int | None = None) -> Prediction:
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

    def evaluate(self, data, batch_size: int | None = None, keep_maps: bool = False) -> dict:
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
