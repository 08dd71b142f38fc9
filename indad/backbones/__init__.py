"""Frozen ImageNet CNNs (timm) and where their weights come from."""

from .extractor import (
    RUNTIMES,
    Backbone,
    BackboneError,
    backbone_normalization,
    check_backbone_name,
    resolve_device,
    state_fingerprint,
)
from .weights import NATIVE_SIZE, PYPI_WEIGHTS, WeightsNotFoundError, load_pretrained

OFFLINE_BACKBONES = tuple(sorted(PYPI_WEIGHTS))

__all__ = [
    "NATIVE_SIZE",
    "OFFLINE_BACKBONES",
    "PYPI_WEIGHTS",
    "RUNTIMES",
    "Backbone",
    "BackboneError",
    "WeightsNotFoundError",
    "backbone_normalization",
    "check_backbone_name",
    "load_pretrained",
    "resolve_device",
    "state_fingerprint",
]
