"""Commands that use a fitted model on files: ``predict`` and ``export``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..thresholds import Decision
from .options import (
    MODEL_ARG,
    USER_ERRORS,
    batch_size_option,
    decision_options,
    device_option,
    engine_options,
    make_engine,
    quiet_option,
    record_option,
    runtime_option,
    scorer_runtime,
    user_error,
)
from .sinks import close_outbox, open_outbox, sink_options


@click.command("predict")
@MODEL_ARG
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@runtime_option
@batch_size_option
@click.option(
    "--workers", default=0, show_default=True, type=click.IntRange(0), help="Image reading processes (local engine)."
)
@device_option()
@decision_options
@sink_options
@record_option
@quiet_option()
@engine_options
def predict_command(
    model_path: str,
    inputs: tuple[str, ...],
    out: str,
    overwrite: bool,
    runtime: str | None,
    batch_size: int,
    workers: int,
    device: str,
    min_area: int,
    decision: str,
    mqtt: tuple[str, ...],
    webhook: tuple[str, ...],
    webhook_secret: str | None,
    outbox: str | None,
    record_target: str | None,
    quiet: bool,
    **engine: Any,
) -> None:
    """Score images and folders (recursively) with MODEL: CSV, JSONL with defect regions, heatmaps, overlays and
    masks in --out.

    With --engine ray, Ray workers (each loading MODEL once) score the images; MODEL, the images and --out
    must be on storage every node sees (their device: --gpus-per-worker).
    """
    from ..inference import open_scorer, predict_folder

    runtime = scorer_runtime(model_path, runtime)
    runner = make_engine(**engine, progress=not quiet)
    sinks = None
    try:
        rule = Decision(decision, min_area)
        if runner is None:
            scorer = open_scorer(model_path, runtime, device)
            sinks = open_outbox(mqtt, webhook, webhook_secret, outbox, Path(f"{Path(out).absolute()}.outbox.sqlite"))
            result = predict_folder(scorer, inputs, out, overwrite, batch_size, workers, not quiet, rule, sinks)
        else:
            if mqtt or webhook:
                raise click.UsageError("--mqtt and --webhook work with the local engine only")
            result = runner.predict_folder(model_path, inputs, out, overwrite, batch_size, runtime, rule)
    except USER_ERRORS as exc:
        raise user_error(exc) from exc
    finally:
        close_outbox(sinks, 30.0)
    if record_target:
        from ..lifecycle.sinks import record_predictions

        click.echo(record_predictions(record_target, result.rows, model_path), err=True)
    defective = sum(1 for r in result.rows if r["decision"] == "defective")
    click.echo(f"{len(result.rows)} images, {defective} defective, {result.failed} unreadable -> {result.out}")
    if result.thresholds is None:
        click.echo("the model has no thresholds: no decisions or masks (see `indad calibrate`)", err=True)
    if result.failed:
        sys.exit(1)


@click.command("export")
@MODEL_ARG
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), default="onnx", show_default=True)
@click.option(
    "--out", "-o", type=click.Path(dir_okay=False), default=None, help="Output file [default: MODEL with .onnx or .pt]."
)
@device_option("cpu")
def export_command(model_path: str, fmt: str, out: str | None, device: str) -> None:
    """Export MODEL's whole pipeline (image tensor -> score, map) as ONNX or TorchScript."""
    from ..export.graph import SUFFIXES, export_model
    from ..methods import load_model

    target = Path(out) if out else Path(model_path).with_suffix(SUFFIXES[fmt])
    try:
        export_model(load_model(model_path, device=device), target, fmt)
    except USER_ERRORS as exc:
        raise user_error(exc) from exc
    click.echo(f"{fmt} -> {target}")
