"""The methods by name, and fitted models rebuilt from model files."""

from __future__ import annotations

import os

from ..errors import ModelFileError
from ..export.model_file import read_header, read_tensors
from ..lineage import from_header
from ..progress import Progress
from ..thresholds import Thresholds
from .base import ROI_TENSOR, AnomalyModel, ModelState
from .ensemble import Ensemble
from .padim import PaDiM
from .patchcore import PatchCore
from .spade import SPADE

METHODS: dict[str, type[AnomalyModel]] = {"patchcore": PatchCore, "padim": PaDiM, "spade": SPADE, "ensemble": Ensemble}


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
    stored = header["backbone"]
    if model.backbone.fingerprint != stored["fingerprint"]:
        raise ModelFileError(
            f"{path} was fitted with {stored['name']} weights of fingerprint {stored['fingerprint']} "
            f"(from {stored['weights_source']}), but the weights found here ({model.backbone.weights_source}) have "
            f"fingerprint {model.backbone.fingerprint}: scores would be meaningless. Pass the original weights."
        )
    tensors = read_tensors(path, model.device)
    if ROI_TENSOR in tensors:
        model.set_roi_mask(tensors.pop(ROI_TENSOR))
    model.from_state(ModelState(tensors, header["state"]))
    model.thresholds = None if header["thresholds"] is None else Thresholds.from_dict(header["thresholds"])
    model.module = model.scoring_module().eval()
    model.provenance = from_header(header)
    return model
