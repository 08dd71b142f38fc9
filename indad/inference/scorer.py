"""The scorer protocol: what the folder predictions, the hot folder and the service score images with."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from ..data import Preprocess
from ..errors import InputError, ModelFileError
from ..export.model_file import ModelInfo, read_model_info
from ..thresholds import Thresholds

if TYPE_CHECKING:
    from ..methods import AnomalyModel


class Scorer(Protocol):
    """A fitted pipeline: normalised images ``(B, 3, H, W)`` -> (scores ``(B,)``, maps ``(B, H, W)``), numpy.

    Attributes
    ----------
    preprocess:
        How an image becomes the scorer's input.
    thresholds:
        The calibrated thresholds, or None.
    header:
        What the model is, as plain data: the model file's header (method, hyperparameters, backbone,
        preprocessing, thresholds; see :meth:`~indad.methods.AnomalyModel.metadata`).
    model_info:
        The model's name and version (:func:`open_scorer` reads them from the file; empty otherwise).
    """

    preprocess: Preprocess
    thresholds: Thresholds | None
    header: dict[str, Any]
    model_info: ModelInfo

    def __call__(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]: ...


class TorchScorer:
    """A fitted :class:`~indad.methods.AnomalyModel` as a :class:`Scorer`."""

    def __init__(self, model: AnomalyModel) -> None:
        model.require_fitted()
        self.model = model
        self.preprocess = model.preprocess
        self.thresholds = model.thresholds
        self.header = model.metadata()
        self.model_info = ModelInfo()

    def __call__(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return self.model.score_batch(images)


def open_scorer(path: str | os.PathLike, runtime: str = "torch", device: str = "auto") -> Scorer:
    """A scorer for a model file (``runtime="torch"``) or an exported ``.onnx`` file (``runtime="onnx"``).

    With ``runtime="onnx"`` and a model file, the ``.onnx`` file beside it
    (same name, written by ``indad export``) is used. The scorer's ``model_info`` names the model and its
    version.
    """
    path = Path(path)
    scorer: Scorer
    if runtime == "onnx":
        from ..export.graph import OnnxScorer

        onnx_path = path if path.suffix == ".onnx" else path.with_suffix(".onnx")
        if not onnx_path.is_file():
            raise ModelFileError(f"no ONNX export of {path}: run `indad export {path} --format onnx` first")
        scorer = OnnxScorer(onnx_path)
        scorer.model_info = read_model_info(onnx_path, scorer.header)
    elif runtime == "torch":
        from ..methods import load_model

        scorer = TorchScorer(load_model(path, device=device))
        scorer.model_info = read_model_info(path)
    else:
        raise InputError(f"unknown runtime {runtime!r}; choose torch or onnx")
    return scorer
