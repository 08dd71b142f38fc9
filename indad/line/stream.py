"""A frame source scored frame by frame: every Nth frame, or the next frame after a trigger.

Triggers come from ``POST /v1/trigger`` (:class:`TriggerServer`, which also answers ``GET /metrics`` and
``/healthz``) or an MQTT topic (:class:`MqttTrigger`); the trigger's id travels with the result. Each result goes
through the :class:`~indad.line.pipeline.Pipeline` (its outbox, so to the sinks) and is appended to
``OUT/results.jsonl``; pictures of the frames the pipeline keeps go under ``OUT/heatmaps|overlays|masks``.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .pipeline import Input, Pipeline, Scored
from .result import new_id
from .sinks import mqtt_client
from .sources import Frame, FrameSource

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"


class Triggers:
    """Trigger ids waiting for a frame, oldest first (thread-safe)."""

    def __init__(self) -> None:
        self._ids: deque[str] = deque()
        self._lock = threading.Lock()
        self.received = 0

    def fire(self, trigger_id: str | None = None) -> str:
        """Ask for the next frame; returns the trigger's id (a new one when not given)."""
        trigger_id = trigger_id or new_id()
        with self._lock:
            self._ids.append(trigger_id)
            self.received += 1
        return trigger_id

    def pending(self) -> bool:
        """Whether a trigger waits for a frame."""
        return bool(self._ids)

    def take(self) -> str | None:
        """The oldest waiting trigger's id (None if none waits)."""
        with self._lock:
            return self._ids.popleft() if self._ids else None


def trigger_id_of(body: bytes) -> str | None:
    """The id a trigger message names: JSON ``{"id": ...}`` (or ``trigger_id``), plain text, or none."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text[:200]
    if isinstance(data, dict):
        value = data.get("id") or data.get("trigger_id")
        return None if value in (None, "") else str(value)[:200]
    return str(data)[:200]


@dataclass
class StreamStats:
    """Frames scored, defective and failed, triggers received, and the source's counters."""

    scored: int = 0
    defective: int = 0
    failed: int = 0
    triggers: int = 0
    source: dict[str, int] = field(default_factory=dict)


def prometheus_text(stats: StreamStats, backlog: int | None) -> str:
    """The stream's counters in Prometheus' text format."""
    counters = {"scored": stats.scored, "defective": stats.defective, "failed": stats.failed}
    counters |= {"triggers": stats.triggers} | {f"source_{k}": v for k, v in stats.source.items()}
    lines = []
    for key, value in counters.items():
        lines += [f"# TYPE indad_stream_{key}_total counter", f"indad_stream_{key}_total {value}"]
    if backlog is not None:
        lines += ["# TYPE indad_outbox_backlog gauge", f"indad_outbox_backlog {backlog}"]
    return "\n".join(lines) + "\n"


class TriggerServer:
    """``POST /v1/trigger`` (body: optional ``{"id": ...}``; answer ``{"trigger_id": ...}``), ``GET /metrics`` and
    ``GET /healthz`` on ``host:port`` (0: a free port), in a thread of its own."""

    def __init__(self, triggers: Triggers, metrics: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                if self.path.split("?")[0] != "/v1/trigger":
                    return self._answer(404, b'{"error": "not_found"}')
                body = self.rfile.read(min(int(self.headers.get("content-length") or 0), 4096))
                trigger_id = outer.triggers.fire(trigger_id_of(body))
                self._answer(202, json.dumps({"trigger_id": trigger_id}).encode())

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    return self._answer(200, outer.metrics().encode(), "text/plain; version=0.0.4")
                if self.path == "/healthz":
                    return self._answer(200, b'{"status": "ok"}')
                self._answer(404, b'{"error": "not_found"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.triggers, self.metrics = triggers, metrics
        try:
            self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise InputError(f"cannot listen for triggers on {host}:{port}: {exc}") from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="indad-trigger", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()


class MqttTrigger:
    """Fires a trigger for each message on ``topic`` of the broker at ``url`` (payload: optional id)."""

    def __init__(self, triggers: Triggers, url: str, topic: str) -> None:
        self.client = mqtt_client(url, client_id=f"indad-trigger-{new_id()[:8]}")
        self.client.on_connect = lambda client, userdata, flags, rc, props: client.subscribe(topic, qos=1)
        self.client.on_message = lambda client, userdata, message: triggers.fire(trigger_id_of(message.payload))

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class StreamRunner:
    """Scores the frames of ``source`` through ``pipeline``: every ``every``-th frame (None: none that way) and
    the next frame after each trigger; results appended to ``out/results.jsonl``."""

    source: FrameSource
    pipeline: Pipeline
    out: Path
    every: int | None = 1
    triggers: Triggers | None = None
    stats: StreamStats = field(default_factory=StreamStats)

    def __post_init__(self) -> None:
        if self.every is None and self.triggers is None:
            raise InputError("nothing would be scored: give --every N or a trigger")
        if self.every is not None and self.every < 1:
            raise InputError(f"--every must be at least 1, got {self.every}")
        self.out = Path(self.out)
        self.out.mkdir(parents=True, exist_ok=True)

    def select(self, index: int) -> bool:
        """Whether frame ``index`` is scored (decided before it is decoded)."""
        due = self.every is not None and index % self.every == 0
        return due or (self.triggers is not None and self.triggers.pending())

    def run(self, stop: threading.Event | None = None, max_frames: int | None = None) -> StreamStats:
        """Score until the source ends, ``stop`` is set or ``max_frames`` frames were scored."""
        stop = stop or threading.Event()
        with open(self.out / RESULTS, "a", encoding="utf-8") as ledger:
            for frame in self.source.frames(stop, self.select):
                self.score(frame, ledger)
                if max_frames is not None and self.stats.scored + self.stats.failed >= max_frames:
                    stop.set()
                if stop.is_set():
                    break
        self.stats.source = asdict(self.source.stats)
        return self.stats

    def score(self, frame: Frame, ledger: Any) -> Scored:
        """Score one frame, append its result and count it."""
        trigger_id = self.triggers.take() if self.triggers is not None else None
        picture = Path(f"frame_{frame.index:08d}.png")
        item = Input(frame.source, frame.image, trigger_id=trigger_id, picture=picture)
        start = time.perf_counter()
        scored = self.pipeline.run([item], self.out)[0]
        result = scored.result
        ledger.write(result.to_json() + "\n")
        ledger.flush()
        if result.error:
            self.stats.failed += 1
            log.warning("%s: %s", result.source, result.error)
        else:
            self.stats.scored += 1
            self.stats.defective += result.decision == "defective"
        self.stats.triggers = self.triggers.received if self.triggers is not None else 0
        self.stats.source = asdict(self.source.stats)
        log.debug("%s: %s in %.1f ms", result.source, result.decision, 1000 * (time.perf_counter() - start))
        return scored
