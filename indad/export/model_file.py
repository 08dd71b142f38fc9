"""One-file fitted models: safetensors tensors plus a JSON header; nothing is unpickled on load."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..results import atomic_output
from ..thresholds import Thresholds

FORMAT = "indad-model/1"
HEADER_KEY = "indad"
# Constructor parameters that describe where a model runs, not what it is: chosen again at load time.
RUNTIME_PARAMS = ("device", "progress", "weights", "num_workers")


class ModelFileError(ValueError):
    """A model file that cannot be read, or does not match the backbone weights at hand."""


def header_of(model) -> dict[str, Any]:
    """The JSON header of a fitted model: what it is, how it preprocesses, its thresholds."""
    from .. import __version__

    return {
        "format": FORMAT,
        "indad_version": __version__,
        "method": model.method,
        "hparams": {k: v for k, v in model.hparams().items() if k not in RUNTIME_PARAMS},
        "backbone": {"name": model.backbone_name, "fingerprint": model.backbone.fingerprint,
                     "weights_source": model.backbone.weights_source},
        "preprocess": model.preprocess.to_dict(),
        "thresholds": None if model.thresholds is None else model.thresholds.to_dict(),
        "state": model._state()[1],
    }


def save_model(model, path: str | os.PathLike) -> Path:
    """Write a fitted model to ``path`` (safetensors with the header as metadata), atomically."""
    from safetensors.torch import save_file

    model._require_fitted()
    tensors, _ = model._state()
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={HEADER_KEY: json.dumps(header_of(model))})
    return Path(path)


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a model file, checked."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no such model file: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path} is not an indad model file (safetensors): {e}") from None
    try:
        header = json.loads(meta[HEADER_KEY])
    except (KeyError, json.JSONDecodeError):
        raise ModelFileError(f"{path} is a safetensors file but not an indad model (no '{HEADER_KEY}' header)") from None
    if header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: unsupported model format {header.get('format')!r} (this indad reads {FORMAT})")
    return header


def load_model(path: str | os.PathLike, device: str = "auto", weights: str | os.PathLike | None = None,
               progress: bool = False):
    """A fitted model from a file written by :func:`save_model`.

    The backbone is built by name (its weights from ``weights`` or the usual
    sources) and must have the fingerprint stored in the file: different weights
    would make every score meaningless, so a mismatch is an error.
    """
    from safetensors.torch import load_file

    from ..methods import METHODS

    header = read_header(path)
    method = header.get("method")
    if method not in METHODS:
        raise ModelFileError(f"{path}: unknown method {method!r} (known: {', '.join(METHODS)})")
    model = METHODS[method](**header["hparams"], device=device, weights=weights, progress=progress)
    stored = header["backbone"]
    if model.backbone.fingerprint != stored["fingerprint"]:
        raise ModelFileError(
            f"{path} was fitted with {stored['name']} weights of fingerprint {stored['fingerprint']} "
            f"(from {stored['weights_source']}), but the weights found here ({model.backbone.weights_source}) have "
            f"fingerprint {model.backbone.fingerprint}: scores would be meaningless. Pass the original weights."
        )
    tensors = load_file(str(path), device=str(model.device))
    model._load_state(tensors, header["state"])
    model.thresholds = None if header["thresholds"] is None else Thresholds.from_dict(header["thresholds"])
    model.module = model._build_module().eval()
    return model
