"""Keeping a model right over months: dataset checks, the prediction record, feedback, versions, drift.

Above :mod:`indad.inference` and beside :mod:`indad.service` (which call it); it depends on neither.
"""

from .drift import DriftLimits, DriftMonitor, DriftReference, DriftStatus
from .record import LABELS, RESULT_FIELDS, PredictionRecord
from .versions import ModelVersion, list_models, make_current, rollback

__all__ = [
    "LABELS",
    "RESULT_FIELDS",
    "DriftLimits",
    "DriftMonitor",
    "DriftReference",
    "DriftStatus",
    "ModelVersion",
    "PredictionRecord",
    "list_models",
    "make_current",
    "rollback",
]
