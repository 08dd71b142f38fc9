"""Running the service under uvicorn with connection limits, timeouts, a graceful drain and a bounded log."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# Largest request line + headers accepted (bytes): h11's own default, stated here.
MAX_HEADER_BYTES = 16 * 1024
# Seconds a connection idle when the drain starts may still bring one request (answered with Connection: close).
DRAIN_IDLE_GRACE_S = 1.0


@dataclass(frozen=True)
class ServerLimits:
    """How long the server waits for clients and how many it serves at once.

    Attributes
    ----------
    keep_alive_s:
        An idle kept-alive connection is closed after this many seconds.
    header_timeout_s:
        A request's line and headers must have arrived this many seconds after the connection opened (or the
        previous response was sent), else the connection is closed.
    max_connections:
        Open connections (and requests under way) beyond which requests get 503 ``overloaded`` at once.
    drain_timeout_s:
        On SIGTERM or Ctrl-C: the longest wait for requests under way before the server exits anyway.
    log_window_s:
        The same log message is written at most once per this many seconds (then with the count it stood for).
    """

    keep_alive_s: float = 5.0
    header_timeout_s: float = 10.0
    max_connections: int = 256
    drain_timeout_s: float = 30.0
    log_window_s: float = 10.0


class RepeatFilter(logging.Filter):
    """Lets a message (by logger, level and format) through at most once per ``window_s`` seconds; the next one
    let through says how many were dropped. Keeps a log from filling the disk when a fault repeats fast."""

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s, self.clock = window_s, clock
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}  # key -> (time let through, dropped since)

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is written (a repeat within the window is not)."""
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        last, dropped = self._last.get(key, (float("-inf"), 0))
        if now - last < self.window_s:
            self._last[key] = (last, dropped + 1)
            return False
        if len(self._last) > 1000:  # many different messages: forget the old ones
            self._last = {k: v for k, v in self._last.items() if now - v[0] < self.window_s}
        self._last[key] = (now, 0)
        if dropped:
            record.msg = f"{record.msg} [{dropped} more like this in the last {now - last:.0f} s not logged]"
        return True


def log_config(window_s: float) -> dict[str, Any]:
    """uvicorn's logging configuration with every handler behind a :class:`RepeatFilter`, and the root logger
    (asyncio's errors, e.g. when out of file descriptors) written by the same handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"repeats": {"()": RepeatFilter, "window_s": window_s}}
    for handler in config["handlers"].values():
        handler["filters"] = ["repeats"]
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config


def limited_protocol(limits: ServerLimits, refused: Callable[[str], None], overloaded: Any) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header timeout, a connection limit answered by the ASGI app ``overloaded``,
    and a drain that lets idle connections bring one last request. ``refused("header_timeout")`` counts the
    connections closed with a request's headers unfinished."""

    class LimitedH11Protocol(H11Protocol):
        """One HTTP connection, with the limits of :class:`ServerLimits`."""

        _header_timer: asyncio.TimerHandle | None = None
        _draining = False
        _app_in_full: Any = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._app_in_full = self.app
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            full = len(self.connections) > limits.max_connections or len(self.tasks) >= limits.max_connections
            self.app = overloaded if full else self._app_in_full
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:  # a request's headers have come
                self._cancel_header_timer()
            if self._draining and self.cycle is not None and not self.cycle.response_complete:
                self.cycle.keep_alive = False

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_timer()

        def shutdown(self) -> None:
            """The drain: a connection between requests may bring one more (within a grace) before it closes."""
            self._draining = True
            idle = self.cycle is None or self.cycle.response_complete
            if not idle:
                self.cycle.keep_alive = False
            elif not self.conn.trailing_data[0]:
                self.loop.call_later(DRAIN_IDLE_GRACE_S, self._close_if_idle)

        def _close_if_idle(self) -> None:
            idle = (self.cycle is None or self.cycle.response_complete) and self.conn.their_state is h11.IDLE
            if idle and not self.conn.trailing_data[0] and not self.transport.is_closing():
                self.transport.close()

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(limits.header_timeout_s, self._header_timeout)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            """No request began in time: close (after an early answer too, its client still sending the body)."""
            self._header_timer = None
            if not self.transport.is_closing():
                if self.conn.trailing_data[0] or self.conn.their_state is not h11.IDLE:  # a request, unfinished
                    refused("header_timeout")
                self.transport.close()

    return LimitedH11Protocol


def run_server(app: Any, host: str, port: int, limits: ServerLimits, refused: Callable[[str], None]) -> None:
    """Serve ``app`` on ``host:port`` until SIGTERM / Ctrl-C, then drain (see :class:`ServerLimits`)."""
    import uvicorn

    async def overloaded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        refused("overloaded")
        body = b'{"error":"overloaded","detail":"too many connections and requests at once: try again later"}'
        length = str(len(body)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", length), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=limited_protocol(limits, refused, overloaded),
        timeout_keep_alive=max(1, round(limits.keep_alive_s)),
        timeout_graceful_shutdown=max(1, round(limits.drain_timeout_s)),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        log_config=log_config(limits.log_window_s),
        log_level="info",
        access_log=False,
    )
    uvicorn.Server(config).run()
