"""Model versions: list the model files of a folder with their lineage, and make one of them current.

Every model file carries ``lineage`` in its header (see :mod:`indad.lineage`):
its version, its parent's, what changed and when. The *current* model is the
file a service or hot folder loads (e.g. ``models/current.indad``); making
another version current copies that version's file over it, after keeping the
replaced version in the same folder (``STEM-VERSION.indad``) if no file there
holds it yet, so that nothing is lost and a rollback can be rolled back.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelFileError
from ..export.model_file import read_header
from ..files import atomic_output

MODEL_SUFFIXES = (".indad", ".safetensors")


@dataclass(frozen=True)
class ModelVersion:
    """A model file and what its header says of its version."""

    path: Path
    version: str | None
    parent: str | None
    created: str | None
    method: str
    changes: dict[str, Any]
    thresholds: dict[str, Any] | None
    training_images: int | None

    def summary(self) -> str:
        """The changes in a few words (images added, thresholds before -> after, fitted from scratch)."""
        c = self.changes
        parts = []
        if c.get("fitted"):
            parts.append("fitted" + (f" on {self.training_images} images" if self.training_images else ""))
        if c.get("images_added"):
            parts.append(f"+{c['images_added']} good images")
        if c.get("thresholds_after"):
            before = (c.get("thresholds_before") or {}).get("image")
            after = c["thresholds_after"]["image"]
            parts.append(f"threshold {before:.4g} -> {after:.4g}" if before is not None else f"threshold {after:.4g}")
        if c.get("false_alarms"):
            parts.append(f"{c['false_alarms']} false alarms fed back")
        return ", ".join(parts) or ("no lineage (older file)" if self.version is None else "saved")


def describe_model(path: str | os.PathLike) -> ModelVersion:
    """The version of one model file (an older file without lineage: version None)."""
    header = read_header(path)
    lineage = header.get("lineage") or {}
    training = header.get("training_set") or {}
    return ModelVersion(
        Path(path),
        lineage.get("version"),
        lineage.get("parent"),
        lineage.get("created"),
        str(header.get("method")),
        dict(lineage.get("changes") or {}),
        header.get("thresholds"),
        training.get("count"),
    )


def list_models(folder: str | os.PathLike) -> list[ModelVersion]:
    """The model files in ``folder``, oldest first (by creation time, files without lineage first).

    Files that are not indad model files are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"no such folder: {folder}")
    found = []
    for path in sorted(folder.iterdir()):
        if path.suffix in MODEL_SUFFIXES and path.is_file():
            try:
                found.append(describe_model(path))
            except ModelFileError:
                continue
    return sorted(found, key=lambda m: (m.created or "", m.path.name))


def find_version(folder: str | os.PathLike, version: str, exclude: Path | None = None) -> ModelVersion:
    """The model file of ``folder`` holding ``version`` (a unique prefix of it is enough)."""
    matches = [m for m in list_models(folder) if m.version and m.version.startswith(version) and m.path != exclude]
    versions = {m.version for m in matches}
    if not matches:
        raise InputError(f"no model file in {folder} holds version {version!r} (see `indad models {folder}`)")
    if len(versions) > 1:
        raise InputError(f"version {version!r} is ambiguous in {folder}: {', '.join(sorted(v for v in versions if v))}")
    return matches[0]


def archive_name(current: Path, version: str | None) -> Path:
    """Where the version replaced in ``current`` is kept: ``STEM-VERSION.SUFFIX`` beside it."""
    return current.with_name(f"{current.stem}-{version or 'unversioned'}{current.suffix}")


def make_current(current: str | os.PathLike, source: str | os.PathLike) -> tuple[ModelVersion, Path | None]:
    """Copy the model file ``source`` over ``current`` (atomically), keeping the replaced version first.

    Returns the version now current and where the replaced one was kept (None
    when ``current`` did not exist or another file of its folder already held it).
    """
    current, source = Path(current), Path(source)
    chosen = describe_model(source)
    kept = None
    if current.exists() and current.resolve() != source.resolve():
        replaced = describe_model(current)
        others = [m for m in list_models(current.parent) if m.path != current and m.version == replaced.version]
        if replaced.version is None or not others:
            kept = archive_name(current, replaced.version)
            with atomic_output(kept) as tmp:
                shutil.copyfile(current, tmp)
    if current.resolve() != source.resolve():
        with atomic_output(current) as tmp:
            shutil.copyfile(source, tmp)
    return chosen, kept


def rollback(current: str | os.PathLike, version: str, folder: str | os.PathLike | None = None) -> ModelVersion:
    """Make ``version`` (a file in ``folder``, default ``current``'s folder) the current model."""
    current = Path(current)
    source = find_version(folder or current.parent, version, exclude=current)
    return make_current(current, source.path)[0]
