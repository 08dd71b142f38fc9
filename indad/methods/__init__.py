"""Anomaly detection methods on frozen CNN features, one module each, sharing :mod:`.base`."""

from .base import AnomalyModel, NotFittedError, Prediction
from .padim import PaDiM
from .patchcore import PatchCore

METHODS: dict[str, type[AnomalyModel]] = {"patchcore": PatchCore, "padim": PaDiM}

__all__ = ["METHODS", "AnomalyModel", "NotFittedError", "PaDiM", "PatchCore", "Prediction"]
