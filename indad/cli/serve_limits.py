"""The options of ``indad serve`` that bound its load: pixels and bytes held at once, timeouts, connections."""

from __future__ import annotations

from typing import Any

import click

from .options import option_group

LIMIT_OPTIONS = (
    click.option(
        "--max-request-pixels",
        default=100_000_000,
        show_default=True,
        type=click.IntRange(1),
        help="Most pixels of all the images of one request (413 above; from the image headers, before decoding).",
    ),
    click.option(
        "--max-queue-pixels",
        default=400_000_000,
        show_default=True,
        type=click.IntRange(1),
        help="Most pixels of the images admitted at once; requests beyond get 503 (busy).",
    ),
    click.option(
        "--max-queue-mb",
        default=512.0,
        show_default=True,
        type=click.FloatRange(0, min_open=True),
        help="Most MiB of request bodies held at once; requests beyond get 503 (busy).",
    ),
    click.option(
        "--keep-alive",
        default=5.0,
        show_default=True,
        type=click.FloatRange(1),
        help="Seconds an idle kept-alive connection stays open.",
    ),
    click.option(
        "--header-timeout",
        default=10.0,
        show_default=True,
        type=click.FloatRange(0, min_open=True),
        help="Seconds for a request's headers to arrive (from the connection or the previous response); "
        "the connection is closed after.",
    ),
    click.option(
        "--body-timeout",
        default=60.0,
        show_default=True,
        type=click.FloatRange(0, min_open=True),
        help="Seconds for a request's body to arrive after its headers (408 after).",
    ),
    click.option(
        "--max-connections",
        default=256,
        show_default=True,
        type=click.IntRange(1),
        help="Open connections (or requests under way) beyond which requests get 503 (overloaded) at once.",
    ),
    click.option(
        "--drain-timeout",
        default=30.0,
        show_default=True,
        type=click.FloatRange(1),
        help="On SIGTERM / Ctrl-C: longest wait for the requests under way before exiting.",
    ),
)


limit_options = option_group(
    "The options bounding a server's load (its function takes them as keyword arguments: ``**limits``).",
    *LIMIT_OPTIONS,
)


def service_limits(limits: dict[str, Any]) -> dict[str, Any]:
    """The :class:`~indad.service.ServiceOptions` fields set by the limit options (``limits``: their values)."""
    return {
        "max_request_pixels": limits["max_request_pixels"],
        "max_queue_pixels": limits["max_queue_pixels"],
        "max_queue_bytes": int(limits["max_queue_mb"] * 2**20),
        "body_timeout_s": limits["body_timeout"],
    }


def server_limits(limits: dict[str, Any]) -> Any:
    """The :class:`~indad.service.server.ServerLimits` set by the limit options (uvicorn is imported here)."""
    from ..service.server import ServerLimits

    return ServerLimits(
        keep_alive_s=limits["keep_alive"],
        header_timeout_s=limits["header_timeout"],
        max_connections=limits["max_connections"],
        drain_timeout_s=limits["drain_timeout"],
    )
