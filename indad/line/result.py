"""The one result of a scored image that every consumer shares: files, the service, sinks, records, monitors."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InputError


@dataclass(frozen=True)
class LineResult:
    """What became of one image: where it came from, its score and decision, and which model judged it.

    Attributes
    ----------
    id:
        Unique id of this result (32 hex digits, a UUID4); a receiver drops a second message with the same id.
    time:
        When it was scored, ISO 8601 in UTC (``2026-12-03T14:05:09.123456+00:00``).
    source:
        Where the image came from: a file path, ``STREAM_URL#FRAME_INDEX`` or an upload's name.
    image_hash:
        sha256 (hex) of the image's decoded pixels: the RGB bytes, row by row, at the original size (so a frame and
        the same picture saved as a PNG hash alike; "" when the image could not be read).
    width, height:
        Size of the original image in pixels (0 when it could not be read).
    score:
        The image's anomaly score; None when it could not be read.
    normalized_score:
        score / image threshold (1.0 at the threshold); None without thresholds.
    decision:
        ``"good"`` or ``"defective"``; None without thresholds or score.
    threshold:
        The image threshold; None without thresholds.
    regions:
        The defect regions (:meth:`indad.regions.Region.to_dict`, original-image pixels); None without thresholds.
    model:
        The model's name: its file name without the suffix.
    model_version:
        The model's version (:func:`indad.export.model_file.model_version`).
    trigger_id:
        The id of the trigger that asked for this image, if one did.
    error:
        Why the image was not scored; "" when it was.
    """

    id: str
    time: str
    source: str
    image_hash: str
    width: int
    height: int
    score: float | None
    normalized_score: float | None
    decision: str | None
    threshold: float | None
    regions: list[dict[str, Any]] | None
    model: str
    model_version: str
    trigger_id: str | None
    error: str

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-able data (the field names as keys)."""
        return asdict(self)

    def to_json(self) -> str:
        """The result as one line of compact JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LineResult:
        """The result of :meth:`to_dict` (extra keys are ignored; a missing one is an :class:`InputError`)."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise InputError(f"not a line result: missing {', '.join(missing)}")
        return cls(**{n: data[n] for n in names})


def new_id() -> str:
    """A new unique result id: a random UUID4 as 32 hex digits."""
    return uuid.uuid4().hex


def stable_id(key: str) -> str:
    """A UUID4-shaped id (32 hex digits) that is the same for the same ``key``: scoring it again repeats the id."""
    return uuid.UUID(bytes=hashlib.sha256(key.encode("utf-8")).digest()[:16], version=4).hex


def utc_now() -> str:
    """The time now in UTC, ISO 8601."""
    return datetime.now(UTC).isoformat()


def pixels_hash(image: Image.Image) -> str:
    """sha256 (hex) of an image's RGB pixels, row by row (see :attr:`LineResult.image_hash`)."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8)).tobytes()).hexdigest()
