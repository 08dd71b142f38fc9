"""Results into the record and the drift monitor: from ``indad predict``'s rows and from the service's replies."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..export.model_file import read_header
from ..lineage import file_sha256, image_statistics, utc_now
from .record import PredictionRecord

ResultHook = Callable[[Sequence[tuple[str, bytes]], Sequence[Image.Image], list[dict[str, Any]]], None]
"""Called by the service after scoring a request: its uploads (name, bytes), decoded images and result dicts."""


def model_identity(path: str | os.PathLike) -> tuple[str, str | None]:
    """A model file's name (the file's stem) and version (from its lineage; None for older files or ONNX)."""
    path = Path(path)
    try:
        lineage = read_header(path).get("lineage") or {}
    except Exception:  # an exported graph, or unreadable here: recorded without a version
        lineage = {}
    return path.stem, lineage.get("version")


def _number(text: Any) -> float | None:
    return None if text in (None, "") else float(text)


def record_rows(
    record: PredictionRecord, rows: Sequence[dict[str, Any]], model: str, version: str | None, keep_images: bool
) -> int:
    """Record ``indad predict``'s result rows (see :func:`indad.inference.folder.score_inputs`); returns how many."""
    for row in rows:
        path = Path(row["path"])
        width = height = None
        image_hash = None
        try:
            image_hash = record.keep_image(path) if keep_images and not row["error"] else file_sha256(path)
            with Image.open(path) as im:
                width, height = im.size
        except OSError:
            pass
        record.write(
            {
                "time": utc_now(),
                "source": str(path.absolute()),
                "image_hash": image_hash,
                "width": width,
                "height": height,
                "score": _number(row["score"]),
                "normalized_score": _number(row["normalized_score"]),
                "decision": row["decision"] or None,
                "threshold": _number(row["threshold"]),
                "regions": row["regions_json"] or None,
                "model": model,
                "model_version": version,
                "error": row["error"] or None,
            }
        )
    return len(rows)


def service_hook(record: PredictionRecord | None, model: str, version: str | None, drift: Any = None) -> ResultHook:
    """The service's hook: each result recorded (its ``id`` and ``model_version`` added to the reply) and
    observed by ``drift`` (a :class:`~indad.lifecycle.drift.DriftMonitor`)."""

    def hook(
        uploads: Sequence[tuple[str, bytes]], images: Sequence[Image.Image], results: list[dict[str, Any]]
    ) -> None:
        for (name, data), image, result in zip(uploads, images, results, strict=True):
            result["model_version"] = version
            if drift is not None:
                drift.observe(float(result["score"]), *image_statistics(image))
            if record is None:
                continue
            image_hash = hashlib.sha256(data).hexdigest()
            if record.images is not None:
                record.keep_bytes(data, image_hash, Path(name).suffix or ".png")
            result["id"] = record.write(
                {
                    "source": name,
                    "image_hash": image_hash,
                    "model": model,
                    "model_version": version,
                    **{k: result.get(k) for k in ("width", "height", "score", "normalized_score", "decision")},
                    "threshold": result.get("threshold"),
                    "regions": result.get("regions"),
                }
            )

    return hook


def record_predictions(target: str | os.PathLike, rows: Sequence[dict[str, Any]], model_path: str | os.PathLike) -> str:
    """Write ``indad predict``'s rows to the record ``target``; what happened, in a line (failures included)."""
    record = PredictionRecord(target)
    name, version = model_identity(model_path)
    record_rows(record, rows, name, version, keep_images=False)
    record.close()
    if record.pending:
        return f"{len(record.pending)} results could NOT be recorded in {record}: {record.last_error}"
    return f"{record.written} results recorded in {record} (model {name} version {version})"


def record_sink(
    target: str | os.PathLike, model_path: str | os.PathLike, images: str | os.PathLike | None = None
) -> Callable[[list[dict[str, Any]]], int]:
    """A callable writing result rows (the hot folder's) to the record ``target``; images kept in ``images``."""
    record = PredictionRecord(target, images)
    name, version = model_identity(model_path)

    def sink(rows: list[dict[str, Any]]) -> int:
        return record_rows(record, rows, name, version, keep_images=images is not None)

    return sink
