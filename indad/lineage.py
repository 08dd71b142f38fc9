"""What a model file says about its own history: its version, its parent, what changed, what it was fitted on.

A model carries these as :attr:`~indad.methods.AnomalyModel.provenance`, plain
JSON values written into the model file's header beside its metadata:

- ``lineage``: ``{"version", "parent", "changes", "created"}``. A model fitted
  from scratch gets a new version with no parent; a loaded model that is
  changed (:meth:`~indad.methods.AnomalyModel.add_normal`, a calibration) gets
  a new version whose parent is the loaded one when it is saved; saving an
  unchanged model keeps its version.
- ``training_set``: the fingerprint of the training images (count, combined
  SHA-256 digest, each file's hash) and their brightness and contrast.
- ``score_reference``: quantiles of the image scores the thresholds were
  calibrated on (what the drift monitor compares the line's scores with).

Old model files without these load as before; they get a version when next saved.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .thresholds import Thresholds

PROVENANCE_KEYS = ("lineage", "training_set", "score_reference")
PENDING = "_pending_changes"
"""Changes made since the model was loaded or fitted, not yet in a saved version (never written)."""
BRIGHTNESS_SAMPLE = 64
"""Training images whose brightness and contrast are measured (spread over the sorted files)."""
REFERENCE_QUANTILES = 101


def utc_now() -> str:
    """The current time, ISO 8601 in UTC with seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_version_id() -> str:
    """A new version id: the UTC time (sortable) and 6 random hex digits, e.g. ``20261203-145500-a1b2c3``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def image_statistics(image: Image.Image) -> tuple[float, float]:
    """Brightness (mean grey level, 0-255) and contrast (standard deviation of the grey levels) of an image."""
    grey = image.convert("L")
    grey.thumbnail((256, 256))
    values = np.asarray(grey, dtype=np.float64)
    return float(values.mean()), float(values.std())


def describe_training_set(paths: Sequence[Path]) -> dict[str, Any]:
    """The fingerprint of training image files: count, combined digest, each file's SHA-256, brightness, contrast.

    The digest is the SHA-256 of the sorted file hashes: the same images give
    the same digest whatever their names or order. Brightness and contrast
    (mean and standard deviation over images) are measured on up to
    :data:`BRIGHTNESS_SAMPLE` images spread over the files.
    """
    hashes = sorted(file_sha256(p) for p in paths)
    step = max(1, len(paths) // BRIGHTNESS_SAMPLE)
    stats = []
    for p in list(paths)[::step][:BRIGHTNESS_SAMPLE]:
        try:
            with Image.open(p) as im:
                stats.append(image_statistics(im))
        except OSError:  # an unreadable file stops fit itself, with a clear error
            continue
    values = np.asarray(stats or [(0.0, 0.0)], dtype=np.float64)
    return {
        "count": len(hashes),
        "digest": hashlib.sha256("\n".join(hashes).encode()).hexdigest(),
        "hashes": hashes,
        "brightness": [float(values[:, 0].mean()), float(values[:, 0].std())],
        "contrast": [float(values[:, 1].mean()), float(values[:, 1].std())],
    }


def score_reference(scores: np.ndarray) -> dict[str, Any]:
    """The calibration scores in brief: :data:`REFERENCE_QUANTILES` quantiles (0 to 1) and their count."""
    scores = np.asarray(scores, dtype=np.float64)
    return {"quantiles": np.quantile(scores, np.linspace(0, 1, REFERENCE_QUANTILES)).tolist(), "n": int(scores.size)}


def count_images(data: Any) -> int | None:
    """How many images ``data`` (a list, a tensor batch, a folder) holds, when that is quick to say."""
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            from .data.images import list_images

            return len(list_images(path, recursive=True))
        return 1
    try:
        return len(data)
    except TypeError:
        return None


def note_thresholds(provenance: dict[str, Any], before: Thresholds | None, after: Thresholds | None) -> None:
    """Record a change of thresholds (``before`` -> ``after``) for the next saved version."""
    note_change(
        provenance,
        thresholds_before=None if before is None else before.to_dict(),
        thresholds_after=None if after is None else after.to_dict(),
    )


def note_change(provenance: dict[str, Any], **changes: Any) -> None:
    """Record changes to the model since its last saved version (they go into the next version's ``changes``).

    ``images_added`` counts add up; ``thresholds_before`` keeps the first value; anything else the last one.
    """
    pending = provenance.setdefault(PENDING, {})
    for key, value in changes.items():
        if key == "images_added":
            pending[key] = int(pending.get(key) or 0) + int(value or 0)
        elif key == "thresholds_before":
            pending.setdefault(key, value)
        else:
            pending[key] = value


def stamp(provenance: dict[str, Any]) -> dict[str, Any]:
    """The provenance a saved file gets: a new version when the model is new or changed, else the same one.

    Pending changes (:func:`note_change`) become the new version's ``changes`` and are cleared.
    """
    pending = provenance.pop(PENDING, None)
    old = provenance.get("lineage")
    if old is None or pending is not None:
        provenance["lineage"] = {
            "version": new_version_id(),
            "parent": None if old is None else old.get("version"),
            "changes": pending or ({"fitted": True} if old is None else {}),
            "created": utc_now(),
        }
    return {k: provenance[k] for k in PROVENANCE_KEYS if k in provenance}


def from_header(header: dict[str, Any]) -> dict[str, Any]:
    """The provenance stored in a model file's header (empty for files older than versions)."""
    return {k: header[k] for k in PROVENANCE_KEYS if header.get(k) is not None}
