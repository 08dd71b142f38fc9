"""The methods by their seed-era import path: ``from indad.models import PatchCore``."""

from .methods import METHODS, SPADE, AnomalyModel, PaDiM, PatchCore, Prediction

__all__ = ["METHODS", "SPADE", "AnomalyModel", "PaDiM", "PatchCore", "Prediction"]
