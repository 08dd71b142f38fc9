"""Anomaly detection methods on frozen CNN features, one module each, sharing :mod:`.base`."""

from .base import AnomalyModel, NotFittedError, Prediction
from .patchcore import PatchCore

METHODS: dict[str, type[AnomalyModel]] = {"patchcore": PatchCore}

__all__ = ["METHODS", "AnomalyModel", "NotFittedError", "PatchCore", "Prediction"]
