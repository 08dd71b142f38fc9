"""The model file format: safetensors tensors plus a JSON header; nothing is unpickled on load.

This module knows the file, not the methods: a method's :meth:`~indad.methods.AnomalyModel.save`
writes its state and metadata here, and :func:`indad.methods.load_model` reads them back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelFileError
from ..files import atomic_output
from ..lineage import file_sha256

FORMAT = "indad-model/1"
HEADER_KEY = "indad"


def file_header(metadata: dict[str, Any]) -> dict[str, Any]:
    """The JSON header of a model file (and of an exported graph): the format tag, then the model's metadata."""
    return {"format": FORMAT, **metadata}


def write_model_file(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> Path:
    """Write ``tensors`` and ``metadata`` (the header, JSON) to ``path`` as one safetensors file, atomically."""
    from safetensors.torch import save_file

    plain = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_output(path) as tmp:
        save_file(plain, str(tmp), metadata={HEADER_KEY: json.dumps(file_header(metadata))})
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
        raise ModelFileError(
            f"{path} is a safetensors file but not an indad model (no '{HEADER_KEY}' header)"
        ) from None
    if header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: unsupported model format {header.get('format')!r} (this indad reads {FORMAT})")
    return header


def read_tensors(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a model file, on ``device``."""
    from safetensors.torch import load_file

    return load_file(str(path), device=str(device))


VERSION_HEX = 12
"""Hex digits of a model file's sha256 that name its version when its header has no lineage."""


def model_version(path: str | os.PathLike, header: dict[str, Any]) -> str:
    """The version of the model in ``path``: ``header["lineage"]["version"]`` when the header has one, else the
    first :data:`VERSION_HEX` hex digits of the file's sha256 (the same bytes, the same version)."""
    lineage = header.get("lineage")
    if isinstance(lineage, dict) and lineage.get("version") not in (None, ""):
        return str(lineage["version"])
    try:
        return file_sha256(path)[:VERSION_HEX]
    except OSError as e:
        raise ModelFileError(f"cannot read model file {path}: {e}") from None


@dataclass(frozen=True)
class ModelInfo:
    """Which model judges: its name (the file name without suffix) and version."""

    name: str = ""
    version: str = ""


def read_model_info(path: str | os.PathLike, header: dict[str, Any] | None = None) -> ModelInfo:
    """The name and version of the model file (or exported graph, with its ``header``) at ``path``."""
    path = Path(path)
    return ModelInfo(path.stem, model_version(path, header if header is not None else read_header(path)))
