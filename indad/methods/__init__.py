"""Anomaly detection methods on frozen CNN features, one module each, sharing :mod:`.base`."""

from .base import AnomalyModel, NotCalibratedError, NotFittedError, Prediction
from .padim import PaDiM
from .patchcore import PatchCore
from .spade import SPADE

METHODS: dict[str, type[AnomalyModel]] = {"patchcore": PatchCore, "padim": PaDiM, "spade": SPADE}

__all__ = ["METHODS", "SPADE", "AnomalyModel", "NotCalibratedError", "NotFittedError", "PaDiM", "PatchCore",
           "Prediction"]
