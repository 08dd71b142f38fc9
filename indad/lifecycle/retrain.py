"""A new model version from the operator's feedback in a prediction record, compared with the current one.

False alarms become good images (:meth:`~indad.methods.AnomalyModel.add_normal`;
every ``calibration_every``-th is held back to calibrate on), the thresholds are
recalibrated on the recorded good images and those held back (at the model's
quantile; never below the current version's thresholds), and the missed
and confirmed defects are kept as a labelled validation set. Both versions are
then scored on that set and on the recorded good images: false alarms and
misses before and after.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..lineage import note_change
from ..thresholds import Thresholds
from .record import PredictionRecord

DEFECT_LABELS = ("missed_defect", "confirmed")


class NoFeedbackError(InputError):
    """A retrain asked of a record without any feedback: nothing to learn, nothing written."""


@dataclass
class ReviewSet:
    """The images of a record, by what the operator (or the model, unreviewed) said of them.

    Attributes
    ----------
    false_alarms:
        Images labelled ``false_alarm``: good parts the model flagged.
    defects:
        Images labelled ``missed_defect`` or ``confirmed``: defective parts.
    good:
        Unreviewed images the model judged good.
    missing:
        Labelled results whose image is no longer found (neither kept nor at its source).
    hashes:
        Each image's hash, by path.
    """

    false_alarms: list[Path] = field(default_factory=list)
    defects: list[Path] = field(default_factory=list)
    good: list[Path] = field(default_factory=list)
    missing: int = 0
    hashes: dict[Path, str] = field(default_factory=dict)


def review_set(record: PredictionRecord) -> ReviewSet:
    """What the record's feedback says, as image files (oldest result first)."""
    labels = record.labels()
    out = ReviewSet()
    seen: set[str] = set()
    for row in reversed(record.rows()):
        label = labels.get(row["id"])
        key = row["image_hash"] or row["source"] or row["id"]
        if row["error"] or key in seen:
            continue
        if label is None and row["decision"] != "good":
            continue
        path = record.image_path(row)
        if path is None:
            out.missing += label is not None
            continue
        seen.add(key)
        out.hashes[path] = row["image_hash"] or ""
        if label == "false_alarm":
            out.false_alarms.append(path)
        elif label in DEFECT_LABELS:
            out.defects.append(path)
        else:
            out.good.append(path)
    return out


def count_flags(model: Any, good: list[Path], defects: list[Path]) -> dict[str, int]:
    """False alarms among ``good`` and misses among ``defects`` under ``model``'s own image threshold."""
    t = model.thresholds.image

    def flagged(paths: list[Path]) -> int:
        return int((model.predict(paths).scores >= t).sum()) if paths else 0

    return {"false_alarms": flagged(good), "good": len(good), "misses": len(defects) - flagged(defects),
            "defects": len(defects)}  # fmt: skip


@dataclass
class RetrainReport:
    """What a retrain did and how the new version compares with the current one."""

    out: Path
    version: str
    parent: str | None
    added: int
    calibration: int
    thresholds_before: float
    thresholds_after: float
    before: dict[str, dict[str, int]]
    after: dict[str, dict[str, int]]
    missing: int = 0

    def lines(self) -> list[str]:
        """The comparison as text lines, for the terminal."""
        rows = [
            f"new version {self.version} (parent {self.parent}) -> {self.out}",
            f"{self.added} false alarms added as good images, {self.calibration} images to calibrate on; "
            f"image threshold {self.thresholds_before:.5g} -> {self.thresholds_after:.5g}",
            f"{'set':<34} {'images':>6} {'before':>7} {'after':>7}",
        ]
        for key, title in (
            ("fed_back", "false alarms fed back (seen in fit)"),
            ("held_back", "false alarms held back"),
            ("good", "recorded good images"),
        ):
            b, a = self.before[key], self.after[key]
            rows.append(f"{title + ': flagged':<34} {b['good']:>6} {b['false_alarms']:>7} {a['false_alarms']:>7}")
        b, a = self.before["defects"], self.after["defects"]
        rows.append(f"{'labelled defects: missed':<34} {b['defects']:>6} {b['misses']:>7} {a['misses']:>7}")
        if self.missing:
            rows.append(f"{self.missing} labelled results left out: their images are no longer found")
        return rows


def retrain(
    model_path: str | os.PathLike,
    record: PredictionRecord,
    out: str | os.PathLike,
    calibration_every: int = 5,
    quantile: float | None = None,
    device: str = "auto",
) -> RetrainReport:
    """Write a new version of the model at ``model_path`` to ``out`` from ``record``'s feedback (see the module).

    Raises :class:`NoFeedbackError` (and writes nothing) when the record holds no feedback.
    """
    from ..methods import load_model

    if not record.labels():
        raise NoFeedbackError(f"the record {record} holds no feedback: nothing to retrain, nothing written")
    review = review_set(record)
    if not review.false_alarms and not review.defects:
        raise NoFeedbackError(
            f"the images of the {review.missing} results with feedback in {record} are no longer found "
            "(keep images with --images): nothing written"
        )
    held = review.false_alarms[calibration_every - 1 :: calibration_every]
    if not held and len(review.false_alarms) > 1:  # at least one to calibrate on
        held = review.false_alarms[-1:]
    added = [p for p in review.false_alarms if p not in held]
    current = load_model(model_path, device=device)
    if current.thresholds is None:
        raise InputError(f"{model_path} has no thresholds: calibrate it first (`indad calibrate`)")
    new = load_model(model_path, device=device)
    if added:
        new.add_normal(added)
    pool = review.good + held
    if pool:
        q = quantile or current.thresholds.quantile or 0.99
        found = new.calibrate(pool, q)
        # Feedback on false alarms must not make the model more sensitive than the current version: the pool is
        # what the current version passed (scores below its threshold by selection), so a lower threshold is kept
        # only from a labelled set (calibrate_f1), never from here.
        old = current.thresholds
        new.thresholds = Thresholds(
            max(found.image, old.image), max(found.pixel, old.pixel), found.rule, found.quantile, found.n_images
        )
        note_change(new.provenance, thresholds_after=new.thresholds.to_dict())
    validation = [{"image_hash": review.hashes[p], "label": 1} for p in review.defects]
    note_change(
        new.provenance,
        false_alarms=len(review.false_alarms),
        record=record.name,
        validation_set=validation,
        calibration_images=len(pool),
    )
    none: list[Path] = []
    sets = {"fed_back": (added, none), "held_back": (held, none), "good": (review.good, none)}
    sets["defects"] = (none, review.defects)
    before = {k: count_flags(current, g, d) for k, (g, d) in sets.items()}
    after = {k: count_flags(new, g, d) for k, (g, d) in sets.items()}
    new.save(out)
    lineage = new.provenance["lineage"]
    return RetrainReport(
        Path(out),
        lineage["version"],
        lineage["parent"],
        len(added),
        len(pool),
        float(current.thresholds.image),
        float(np.float64(new.thresholds.image)) if new.thresholds else float("nan"),
        before,
        after,
        review.missing,
    )
