"""Anomaly detection methods on frozen CNN features, one module each, sharing :mod:`.base`.

``from indad.methods import PatchCore`` is the import path of the methods (``indad.models`` and the
seed's ``indad.model`` are aliases of this one). Importing a method module registers it in
:data:`METHODS` (:func:`~indad.methods.registry.register`).
"""

from ..errors import NotCalibratedError, NotFittedError
from .base import AnomalyModel, Batch, ModelState, Prediction, Tensors
from .ensemble import Ensemble
from .padim import PaDiM
from .patchcore import PatchCore
from .registry import METHODS, load_model, register
from .spade import SPADE

__all__ = [
    "METHODS",
    "SPADE",
    "AnomalyModel",
    "Batch",
    "Ensemble",
    "ModelState",
    "NotCalibratedError",
    "NotFittedError",
    "PaDiM",
    "PatchCore",
    "Prediction",
    "Tensors",
    "load_model",
    "register",
]
