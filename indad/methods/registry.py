"""The methods by name, filled by :func:`register`, and fitted models rebuilt from model files.

This module imports no method: each method module registers its class when it
is imported (:mod:`indad.methods` imports them all), so a method built from
others (the ensemble) looks them up here without an import cycle.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

from ..backbones import Backbone
from ..errors import ModelFileError
from ..export.model_file import read_header, read_tensors
from ..lineage import from_header
from ..progress import Progress
from ..thresholds import Thresholds
from .base import ROI_TENSOR, AnomalyModel, ModelState
from .robust import ALIGN_TENSOR

METHODS: dict[str, type[AnomalyModel]] = {}
"""Every registered method class by its name (``PatchCore.method == "patchcore"``)."""

M = TypeVar("M", bound=type[AnomalyModel])


def register(cls: M) -> M:
    """Class decorator: make a method known by its :attr:`~indad.methods.AnomalyModel.method` name."""
    name = cls.method
    if not name:
        raise TypeError(f"{cls.__name__} has no method name to register under")
    if METHODS.get(name, cls) is not cls:
        raise TypeError(f"method name {name!r} is taken by {METHODS[name].__name__}")
    METHODS[name] = cls
    return cls


def check_fingerprint(backbone: Backbone, stored: dict[str, Any], what: str) -> None:
    """Refuse a backbone whose weights differ from those ``what`` was fitted with (``stored``: its header entry)."""
    if backbone.fingerprint != stored["fingerprint"]:
        source = f" (from {stored['weights_source']})" if "weights_source" in stored else ""
        raise ModelFileError(
            f"{what} was fitted with {stored['name']} weights of fingerprint {stored['fingerprint']}"
            f"{source}, but the weights found here ({backbone.weights_source}) "
            f"have fingerprint {backbone.fingerprint}: scores would be meaningless. Pass the original weights."
        )


def load_model(
    path: str | os.PathLike, device: str = "auto", weights: str | os.PathLike | None = None, progress: Progress = False
) -> AnomalyModel:
    """A fitted model from a file written by :meth:`~indad.methods.AnomalyModel.save`.

    The backbone is built by name (its weights from ``weights`` or the usual
    sources) and must have the fingerprint stored in the file: different weights
    would make every score meaningless, so a mismatch is an error.
    """
    header = read_header(path)
    method = header.get("method")
    if method not in METHODS:
        raise ModelFileError(f"{path}: unknown method {method!r} (known: {', '.join(METHODS)})")
    # The region of interest travels as a tensor (its picture need not exist here): not rebuilt from its source.
    hparams = {**header["hparams"], "roi": None}
    model = METHODS[method](**hparams, device=device, weights=weights, progress=progress)
    model.roi = header["hparams"].get("roi")
    check_fingerprint(model.backbone, header["backbone"], str(path))
    tensors = read_tensors(path, model.device)
    roi = tensors.pop(ROI_TENSOR, None)
    model.set_align_reference(tensors.pop(ALIGN_TENSOR, None))
    model.restore(ModelState(tensors, header["state"]), roi_mask=roi)
    model.thresholds = None if header["thresholds"] is None else Thresholds.from_dict(header["thresholds"])
    model.provenance = from_header(header)
    return model
