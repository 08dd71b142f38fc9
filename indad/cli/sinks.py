"""The sink options shared by ``indad predict``, ``watch``, ``serve`` and ``stream``: declared once, here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

log = logging.getLogger(__name__)

OUTBOX_NAME = "outbox.sqlite"


def sink_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--mqtt URL`` and ``--webhook URL`` (repeatable), ``--webhook-secret`` and ``--outbox`` to a command."""
    options = (
        click.option(
            "--mqtt",
            "mqtt",
            multiple=True,
            metavar="URL",
            help="Publish each result to this MQTT broker (mqtt://[USER:PASS@]HOST[:PORT], mqtts://...) on "
            "indad/MODEL/result, QoS 1, retained. Repeatable.",
        ),
        click.option(
            "--webhook",
            "webhook",
            multiple=True,
            metavar="URL",
            help="POST each result as JSON to this URL (retried until it answers 2xx). Repeatable.",
        ),
        click.option(
            "--webhook-secret",
            envvar="INDAD_WEBHOOK_SECRET",
            default=None,
            help="Sign webhook bodies: X-Indad-Signature: sha256=HMAC-SHA256 (default: $INDAD_WEBHOOK_SECRET).",
        ),
        click.option(
            "--outbox",
            type=click.Path(dir_okay=False),
            default=None,
            help="SQLite file where results wait until each sink has them [default: outbox.sqlite in the "
            "output folder, or beside it].",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def open_outbox(
    mqtt: tuple[str, ...], webhook: tuple[str, ...], webhook_secret: str | None, outbox: str | None, default: Path
) -> Any:
    """The started :class:`~indad.line.outbox.Outbox` of the sink options (None without sinks)."""
    if not mqtt and not webhook:
        return None
    from ..line.outbox import Outbox
    from ..line.sinks import make_sinks

    return Outbox(Path(outbox) if outbox else default, make_sinks(mqtt, webhook, webhook_secret)).start()


def close_outbox(outbox: Any, wait_s: float) -> None:
    """Give the sinks up to ``wait_s`` seconds to take what waits, then stop (the rest waits on disk)."""
    if outbox is None:
        return
    if not outbox.wait_empty(wait_s):
        click.echo(
            f"{outbox.backlog()} results still wait in {outbox.path} for their receivers: they are sent by the "
            "next run with the same --outbox",
            err=True,
        )
    outbox.close()


def serve_stream_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--source``, ``--every`` and ``--stream-out`` (a frame source scored inside ``indad serve``)."""
    options = (
        click.option(
            "--source",
            default=None,
            metavar="SPEC",
            help="Also score frames of this video file, stream (http MJPEG, rtsp://) or camera (usb:N): the next "
            "frame on POST /v1/trigger, and every --every Nth (one model file only).",
        ),
        click.option("--every", type=click.IntRange(1), default=None, help="With --source: score every Nth frame too."),
        click.option(
            "--stream-out",
            type=click.Path(file_okay=False),
            default="stream",
            show_default=True,
            help="With --source: where the frames' results.jsonl and pictures go.",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command
