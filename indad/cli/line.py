"""``indad stream``: score the frames of a video file, a stream or a camera, results to files and sinks."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..thresholds import Decision
from .options import (
    MODEL_ARG,
    USER_ERRORS,
    decision_options,
    device_option,
    runtime_option,
    scorer_runtime,
    set_threads,
    setup_logging,
    threads_option,
    user_error,
    verbose_option,
)
from .sinks import OUTBOX_NAME, close_outbox, open_outbox, sink_options

if TYPE_CHECKING:
    from ..line.pipeline import Pictures

log = logging.getLogger(__name__)


@click.command("stream")
@MODEL_ARG
@click.argument("source")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Results folder.")
@click.option(
    "--every", type=click.IntRange(1), default=None, help="Score every Nth frame [default: 1 without triggers]."
)
@click.option(
    "--trigger-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Listen for POST /v1/trigger on this port (also GET /metrics, /healthz): score the next frame.",
)
@click.option("--trigger-host", default="127.0.0.1", show_default=True, help="Address the trigger port listens on.")
@click.option(
    "--mqtt-trigger",
    metavar="TOPIC",
    default=None,
    help="Score the next frame for each message on this topic of the first --mqtt broker (payload: optional id).",
)
@click.option(
    "--pictures",
    type=click.Choice(["all", "defective", "none"]),
    default="defective",
    show_default=True,
    help="Whose heatmap, overlay and mask are written under --out.",
)
@click.option("--stall", default=5.0, show_default=True, type=click.FloatRange(0.1), help="Seconds without a frame "
              "that count as a stall (the stream is opened again).")  # fmt: skip
@click.option("--max-frames", type=click.IntRange(1), default=None, help="Stop after scoring this many frames.")
@runtime_option
@device_option()
@threads_option
@decision_options
@sink_options
@verbose_option
def stream_command(
    model_path: str,
    source: str,
    out: str,
    every: int | None,
    trigger_port: int | None,
    trigger_host: str,
    mqtt_trigger: str | None,
    pictures: Pictures,
    stall: float,
    max_frames: int | None,
    runtime: str | None,
    device: str,
    threads: int | None,
    min_area: int,
    decision: str,
    mqtt: tuple[str, ...],
    webhook: tuple[str, ...],
    webhook_secret: str | None,
    outbox: str | None,
    verbose: bool,
) -> None:
    """Score frames of SOURCE with MODEL: a video file, an HTTP MJPEG or rtsp:// URL, usb:N (local camera) or
    genicam:PRODUCER.cti[#N]. Every --every Nth frame, and/or the next frame after each trigger.

    Results go to OUT/results.jsonl and to the --mqtt / --webhook sinks (through the outbox: nothing lost
    while a receiver is down). A stream that ends or stalls is opened again. Stop with Ctrl-C.
    """
    from ..inference import open_scorer
    from ..line.pipeline import Pipeline
    from ..line.sources import open_source
    from ..line.stream import MqttTrigger, StreamRunner, Triggers, TriggerServer, prometheus_text

    setup_logging(verbose, False)
    if mqtt_trigger and not mqtt:
        raise click.UsageError("--mqtt-trigger needs an --mqtt broker")
    triggered = trigger_port is not None or mqtt_trigger is not None
    every = every if every is not None or triggered else 1
    set_threads(threads)
    runtime = scorer_runtime(model_path, runtime)
    sinks, closers = None, []
    stop = threading.Event()
    try:
        frames = open_source(source, stall_s=stall)
        scorer = open_scorer(model_path, runtime, device)
        sinks = open_outbox(mqtt, webhook, webhook_secret, outbox, Path(out) / OUTBOX_NAME)
        pipeline = Pipeline(scorer, scorer.model_info, Decision(decision, min_area), pictures, sinks)
        triggers = Triggers() if triggered else None
        runner = StreamRunner(frames, pipeline, Path(out), every, triggers)
        if triggers is not None and trigger_port is not None:
            backlog = (lambda: sinks.backlog()) if sinks is not None else (lambda: None)
            server = TriggerServer(
                triggers, lambda: prometheus_text(runner.stats, backlog()), trigger_host, trigger_port
            )
            closers.append(server.close)
            click.echo(f"triggers: POST http://{trigger_host}:{server.port}/v1/trigger")
        if triggers is not None and mqtt_trigger:
            closers.append(MqttTrigger(triggers, mqtt[0], mqtt_trigger).close)
        click.echo(f"scoring {frames.name} -> {out} (Ctrl-C stops)")
        stats = runner.run(stop, max_frames)
    except KeyboardInterrupt:
        stop.set()
        return
    except USER_ERRORS as exc:
        raise user_error(exc) from exc
    finally:
        for close in closers:
            close()
        close_outbox(sinks, 10.0)
    s = stats.source
    click.echo(
        f"{stats.scored} frames scored ({stats.defective} defective, {stats.failed} failed) of {s['frames']}; "
        f"{s['corrupt']} corrupt, {s['stalls']} stalls, {s['ends']} ends, {s['reconnects']} reconnections -> {out}"
    )
