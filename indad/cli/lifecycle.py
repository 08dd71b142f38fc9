"""The ``indad`` commands of the model's life on a line: feedback, review, retrain, models, rollback, check."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..lifecycle.record import LABELS
from .options import MODEL_ARG, USER_ERRORS, device_option, quiet_option, user_error

RECORD_OPTION = click.option(
    "--record",
    "record_target",
    required=True,
    help="The prediction record: an SQLite file, or a database URL (postgresql+psycopg://user@host/db).",
)


@click.command("feedback")
@click.argument("record_target", metavar="RECORD")
@click.argument("result_id", metavar="ID")
@click.argument("label", type=click.Choice(LABELS))
@click.option("--reason", default=None, help="Why (kept with the label).")
@click.option("--who", default=None, help="Who says so.")
def feedback_command(record_target: str, result_id: str, label: str, reason: str | None, who: str | None) -> None:
    """Label the result ID of RECORD (an SQLite file or database URL): false_alarm, missed_defect or confirmed.

    The last label of a result counts; every one is kept.
    """
    from ..lifecycle.record import PredictionRecord

    try:
        record = PredictionRecord(record_target)
        given = record.add_feedback(result_id, label, reason, who)
        history = record.history(result_id)
    except USER_ERRORS as exc:
        raise user_error(exc) from exc
    earlier = ", ".join(f.label for f in history[:-1])
    click.echo(f"{given.result_id}: {given.label}" + (f" (before: {earlier})" if earlier else ""))


@click.command("review")
@click.argument("record_target", metavar="RECORD")
@click.option("--order", type=click.Choice(["newest", "uncertain"]), default="newest", show_default=True)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1))
def review_command(record_target: str, order: str, limit: int) -> None:
    """List RECORD's results, newest or most uncertain (normalised score nearest 1) first, with their labels."""
    from ..lifecycle.record import PredictionRecord

    try:
        rows = PredictionRecord(record_target).rows(limit, order)
    except USER_ERRORS as exc:
        raise user_error(exc) from exc
    click.echo(f"{'id':<32}  {'time':<20}  {'score':>8}  {'norm':>6}  {'decision':<9}  {'label':<13}  source")
    for r in rows:
        norm = "" if r["normalized_score"] is None else f"{r['normalized_score']:.3f}"
        score = "" if r["score"] is None else f"{r['score']:.4g}"
        click.echo(
            f"{r['id']:<32}  {r['time']:<20}  {score:>8}  {norm:>6}  {r['decision'] or '':<9}  "
            f"{r['label'] or '':<13}  {r['source'] or ''}"
        )


@click.command("retrain")
@MODEL_ARG
@RECORD_OPTION
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="The new version's model file.")
@click.option("--images", default=None, type=click.Path(file_okay=False), help="The record's kept images.")
@click.option(
    "--calibration-every",
    default=5,
    show_default=True,
    type=click.IntRange(2),
    help="Every N-th false alarm is held back to calibrate on instead of being added.",
)
@click.option("--promote", is_flag=True, help="Then make the new version current: copy it over MODEL (kept first).")
@device_option()
def retrain_command(
    model_path: str,
    record_target: str,
    out: str,
    images: str | None,
    calibration_every: int,
    promote: bool,
    device: str,
) -> None:
    """A new version of MODEL from the feedback in --record: false alarms added as good images, thresholds
    recalibrated, labelled defects kept to validate; prints false alarms and misses before / after.

    A record without feedback: says so and writes nothing.
    """
    from ..lifecycle.record import PredictionRecord
    from ..lifecycle.retrain import retrain
    from ..lifecycle.versions import make_current

    try:
        report = retrain(model_path, PredictionRecord(record_target, images), out, calibration_every, device=device)
        for line in report.lines():
            click.echo(line)
        if promote:
            chosen, kept = make_current(model_path, out)
            note = f" (previous kept as {kept})" if kept else ""
            click.echo(f"{model_path} is now version {chosen.version}{note}")
    except USER_ERRORS as exc:
        raise user_error(exc) from exc


@click.command("models")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
def models_command(folder: str) -> None:
    """List the model files of FOLDER with their version, parent, date and what changed, oldest first."""
    from ..lifecycle.versions import list_models

    try:
        found = list_models(folder)
    except USER_ERRORS as exc:
        raise user_error(exc) from exc
    click.echo(f"{'file':<28}  {'version':<22}  {'parent':<22}  {'created':<20}  changes")
    for m in found:
        click.echo(
            f"{m.path.name:<28}  {m.version or '-':<22}  {m.parent or '-':<22}  {m.created or '-':<20}  {m.summary()}"
        )


@click.command("rollback")
@click.argument("current", type=click.Path(dir_okay=False, exists=True))
@click.argument("version")
@click.option(
    "--dir", "folder", default=None, type=click.Path(file_okay=False, exists=True), help="[default: CURRENT's folder]"
)
def rollback_command(current: str, version: str, folder: str | None) -> None:
    """Make VERSION (a model file in --dir holding it; a unique prefix is enough) the CURRENT model file.

    The replaced version is kept beside it first (CURRENT-VERSION.indad) unless a file there already holds it.
    """
    from ..lifecycle.versions import rollback

    try:
        chosen = rollback(current, version, folder)
    except USER_ERRORS as exc:
        raise user_error(exc) from exc
    click.echo(f"{current} is now version {chosen.version} (from {chosen.path.name})")


@click.command("check")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False), help="Write the report as JSON.")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(0), help="k-fold scoring of train/good "
              "(0: skip the search for defective-looking training images).")  # fmt: skip
@click.option("--image-size", default=128, show_default=True, type=click.IntRange(32), help="k-fold models' size.")
@click.option("--heatmaps", default=None, type=click.Path(file_okay=False), help="Write the outliers' heatmaps here.")
@device_option()
@quiet_option()
def check_command(
    dataset: str,
    json_out: str | None,
    folds: int,
    image_size: int,
    heatmaps: str | None,
    device: str,
    quiet: bool,
) -> None:
    """Check DATASET (MVTec AD layout, or a folder of good images): unreadable files, duplicates, test images in
    train, sizes and modes, masks, and training images that look defective (k-fold)."""
    from ..files import write_atomic
    from ..lifecycle.checks import check_dataset

    try:
        report = check_dataset(Path(dataset), folds, image_size, device=device, heatmaps=heatmaps, progress=not quiet)
        if json_out:
            write_atomic(json_out, json.dumps(report.to_dict(), indent=1))
    except USER_ERRORS as exc:
        raise user_error(exc) from exc
    for line in report.table():
        click.echo(line)
