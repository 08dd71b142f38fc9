"""Commands that keep a model at work: ``serve`` (HTTP), ``watch`` (a hot folder) and ``app`` (the web app)."""

from __future__ import annotations

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
    images_option,
    record_option,
    runtime_option,
    scorer_runtime,
    set_threads,
    threads_option,
    user_error,
)
from .serve_limits import limit_options, server_limits, service_limits
from .sinks import OUTBOX_NAME, close_outbox, open_outbox, serve_stream_options, sink_options


@click.command("serve")
@click.argument("model_path", metavar="MODEL|DIR", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@runtime_option
@device_option()
@threads_option
@click.option("--max-batch", default=16, show_default=True, type=click.IntRange(1), help="Most images per batch.")
@click.option(
    "--max-wait-ms",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Longest wait for more images before a batch is scored.",
)
@click.option(
    "--max-body-mb",
    default=64.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Largest request body (MiB).",
)
@click.option(
    "--max-pixels",
    default=50_000_000,
    show_default=True,
    type=click.IntRange(1),
    help="Largest image accepted (pixels; checked before decoding).",
)
@click.option("--max-images", default=64, show_default=True, type=click.IntRange(1), help="Most images per request.")
@click.option(
    "--max-queue",
    default=256,
    show_default=True,
    type=click.IntRange(1),
    help="Most images waiting to be scored; requests beyond get 503 (busy).",
)
@decision_options
@sink_options
@serve_stream_options
@click.option(
    "--token",
    envvar="INDAD_SERVE_TOKEN",
    default=None,
    help="Bearer token required on every route but /healthz [default: $INDAD_SERVE_TOKEN; none: open].",
)
@record_option
@images_option
@limit_options
def serve_command(
    model_path: str,
    host: str,
    port: int,
    runtime: str | None,
    device: str,
    threads: int | None,
    max_batch: int,
    max_wait_ms: float,
    max_body_mb: float,
    max_pixels: int,
    max_images: int,
    max_queue: int,
    min_area: int,
    decision: str,
    mqtt: tuple[str, ...],
    webhook: tuple[str, ...],
    webhook_secret: str | None,
    outbox: str | None,
    source: str | None,
    every: int | None,
    stream_out: str,
    token: str | None,
    record_target: str | None,
    images: str | None,
    **limits: Any,
) -> None:
    """Serve MODEL over HTTP: POST /v1/predict, GET /v1/model, /healthz, /metrics; OpenAPI docs at /docs.

    Given a folder DIR, serve every DIR/NAME.indad at POST /v1/models/NAME/predict (GET /v1/models lists them);
    a model file added, replaced or removed there is picked up without a restart.
    With --source, POST /v1/trigger scores the next frame of a camera or stream (see indad stream).
    """
    try:
        from ..service import ServiceOptions, create_app
        from ..service.server import run_server
    except ImportError as exc:
        raise click.ClickException(f"indad serve needs its extra: pip install 'indad[serve]' ({exc})") from exc
    from ..inference import open_scorer

    set_threads(threads)
    runtime = scorer_runtime(model_path, runtime)
    folder = Path(model_path).is_dir()
    if source is not None and folder:
        raise click.UsageError("--source works with one model file, not a folder")
    try:
        scorer = None if folder else open_scorer(model_path, runtime, device)
        rule = Decision(decision, min_area)
    except USER_ERRORS as exc:
        raise user_error(exc) from exc
    options = ServiceOptions(
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_body_bytes=int(max_body_mb * 2**20),
        max_pixels=max_pixels,
        max_images=max_images,
        decision=rule,
        token=token or None,
        decode_threads=threads or 2,
        max_queue=max_queue,
        **service_limits(limits),
    )
    try:
        sinks = open_outbox(mqtt, webhook, webhook_secret, outbox, Path(OUTBOX_NAME).absolute())
    except USER_ERRORS as exc:
        raise user_error(exc) from exc
    if scorer is None:
        from ..service.models import create_models_app

        app = create_models_app(Path(model_path), options, sinks, runtime, device)
    else:
        app = create_app(scorer, options, sinks)
    if source is not None and scorer is not None:
        from ..line.sources import open_source
        from ..service.stream import attach_stream

        try:
            attach_stream(app, scorer, open_source(source), Path(stream_out), every, rule, sinks)
        except USER_ERRORS as exc:
            raise user_error(exc) from exc
    if record_target:
        if scorer is None:
            raise click.UsageError("--record works with one model file, not a folder")
        from ..service.feedback import attach_lifecycle

        attach_lifecycle(app, model_path, record_target, images)
    if sinks is not None:
        from ..line.outbox import register_metrics

        register_metrics(app.state.metrics.registry, sinks)
    try:
        run_server(app, host, port, server_limits(limits), app.state.metrics.refuse)
    finally:
        close_outbox(sinks, 5.0)


@click.command("watch")
@MODEL_ARG
@click.argument("in_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Results folder.")
@click.option("--move", is_flag=True, help="Move each scored image to OUT/ok, OUT/ng or OUT/error.")
@click.option("--poll", default=1.0, show_default=True, type=click.FloatRange(0.01), help="Seconds between scans.")
@click.option(
    "--settle",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds a file must stay unchanged (size, time) before it counts as written.",
)
@click.option(
    "--unreadable-after",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds a file that does not decode must stay unchanged before it counts as unreadable.",
)
@click.option("--once", is_flag=True, help="Score what is there, then exit (no watching).")
@runtime_option
@batch_size_option
@device_option()
@threads_option
@decision_options
@sink_options
@record_option
@images_option
def watch_command(
    model_path: str,
    in_dir: str,
    out: str,
    move: bool,
    poll: float,
    settle: float,
    unreadable_after: float,
    once: bool,
    runtime: str | None,
    batch_size: int,
    device: str,
    threads: int | None,
    min_area: int,
    decision: str,
    mqtt: tuple[str, ...],
    webhook: tuple[str, ...],
    webhook_secret: str | None,
    outbox: str | None,
    record_target: str | None,
    images: str | None,
) -> None:
    """Watch IN_DIR: score each new image once (when completely written), append its result to
    OUT/predictions.csv and OUT/predictions.jsonl, write its pictures, and with --move sort it into OUT/ok|ng.

    A restart neither scores a file twice nor skips one. Stop with Ctrl-C.
    """
    from ..inference import open_scorer
    from ..inference.watch import HotFolder
    from ..lifecycle.sinks import record_sink

    set_threads(threads)
    runtime = scorer_runtime(model_path, runtime)
    sinks = None
    try:
        scorer = open_scorer(model_path, runtime, device)
        sinks = open_outbox(mqtt, webhook, webhook_secret, outbox, Path(out) / OUTBOX_NAME)
        folder = HotFolder(
            scorer,
            Path(in_dir),
            Path(out),
            move,
            settle,
            batch_size,
            Decision(decision, min_area),
            unreadable_after_s=unreadable_after,
            publisher=sinks,
            on_rows=None if record_target is None else record_sink(record_target, model_path, images),
        )
        if not once:
            click.echo(f"watching {in_dir} -> {out} (Ctrl-C stops)")
        count = folder.run(poll, once=once)
    except KeyboardInterrupt:
        return
    except USER_ERRORS as exc:
        raise user_error(exc) from exc
    finally:
        close_outbox(sinks, 30.0 if once else 5.0)
    click.echo(f"{count} images scored -> {out}")


@click.command("app")
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535), help="Port to serve on.")
@click.option("--address", default=None, help="Address to listen on [default: Streamlit's, all interfaces].")
@click.option(
    "--data-root",
    default=None,
    type=click.Path(file_okay=False, exists=True),
    help="Folder holding the datasets [default: $INDAD_DATA_DIR or ./datasets].",
)
@click.option("--headless", is_flag=True, help="Do not open a browser.")
def app_command(port: int, address: str | None, data_root: str | None, headless: bool) -> None:
    """Start the web app: train, inspect and use a model in the browser."""
    try:
        import streamlit  # noqa: F401
    except ImportError as exc:
        raise click.ClickException("the web app needs Streamlit: pip install 'indad[app]'") from exc
    from ..app import serve

    serve(port, headless, address, data_root)
