"""The whole scoring pipeline as a standalone graph: ONNX (run with ONNX Runtime) or TorchScript.

The graph maps a normalised image batch ``(B, 3, H, W)`` (dynamic ``B``) to
``(image scores (B,), anomaly maps (B, H, W))`` with the memory bank or the
Gaussian statistics embedded; nearest-neighbour search runs in blocks of the
bank inside the graph. The model's header (preprocessing, thresholds) travels
in the ONNX metadata, and in a TorchScript file's extra files.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data import Preprocess
from ..data.tiles import Tiling, tile_origins
from ..errors import InputError, ModelFileError
from ..files import atomic_output
from ..thresholds import Thresholds
from .model_file import HEADER_KEY, ModelInfo, file_header

if TYPE_CHECKING:  # types only: export/ never imports the methods at run time (they import the file format)
    from ..methods import AnomalyModel

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


def _example(model: AnomalyModel, batch: int = 2) -> torch.Tensor:
    h, w = model.preprocess.output_size
    return torch.zeros(batch, 3, h, w, device=model.device)


def export_model(model: AnomalyModel, path: str | os.PathLike, fmt: str = "onnx") -> Path:
    """Write a fitted model's pipeline as ONNX or TorchScript to ``path``, atomically."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    model.require_fitted()
    module = model.scoring_module(exportable=True).eval()
    header = json.dumps(file_header(model.metadata()))
    with atomic_output(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.onnx.export(
                module,
                (_example(model),),
                dynamo=True,
                verbose=False,
                input_names=["image"],
                output_names=["score", "anomaly_map"],
                dynamic_shapes={"images": {0: batch}},
            )
            assert program is not None  # dynamo=True always returns the program
            program.model.metadata_props[HEADER_KEY] = header
            program.save(str(tmp))
        else:
            with torch.no_grad():
                traced = torch.jit.trace(module, _example(model), check_trace=False)
            torch.jit.save(traced, str(tmp), _extra_files={HEADER_KEY: header})
    return Path(path)


class OnnxScorer:
    """An exported ONNX model run with ONNX Runtime: ``scorer(images) -> (scores, maps)`` as numpy arrays.

    Attributes
    ----------
    header:
        The model header (method, hyperparameters, preprocessing, thresholds).
    preprocess:
        The image preprocessing the model expects.
    thresholds:
        The calibrated thresholds, or None.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 0) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"no such ONNX model: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=_providers(ort))
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelFileError(f"{path} is not a readable ONNX model: {e}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if HEADER_KEY not in meta:
            raise ModelFileError(f"{path} was not exported by indad (no '{HEADER_KEY}' metadata)")
        self.header = json.loads(meta[HEADER_KEY])
        self.model_info = ModelInfo()
        self.preprocess = Preprocess.from_dict(self.header["preprocess"])
        t = self.header.get("thresholds")
        self.thresholds = None if t is None else Thresholds.from_dict(t)
        self.input_name = self.session.get_inputs()[0].name
        hparams = self.header["hparams"]
        tiling = Tiling.parse(hparams.get("tile"))
        tiles = 1 if tiling is None else len(tile_origins(self.preprocess.output_size, tiling))
        # a tiled model's run sees about batch_size tiles, as the model's own scoring does
        self.images_per_run = None if tiling is None else max(1, int(hparams.get("batch_size", 16)) // tiles)

    def __call__(self, images: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        x = np.ascontiguousarray(x, dtype=np.float32)
        step = self.images_per_run or max(1, len(x))
        runs = [self.session.run(None, {self.input_name: x[a : a + step]}) for a in range(0, len(x), step)]
        return np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs])


def _providers(ort: Any) -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
