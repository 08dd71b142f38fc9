"""The persistent outbox: results wait on disk (SQLite, WAL) until each sink has them, in order.

:meth:`Outbox.publish` writes a message per sink in one transaction, synced to disk before it returns, so a
result acknowledged by indad survives a crash or a kill. One delivery thread per sink sends its oldest message,
deletes it once the sink returned, and after a failure waits (0.5 s, doubling up to 10 s) and tries the same
message again: messages reach a receiver in order, at least once, and a repeat carries the same result id.
On start, the messages left by an earlier run are delivered first. The outbox holds at most ``max_messages``
per sink: past that, the oldest are dropped (logged and counted), so a receiver gone for good cannot fill the
disk. One process uses an outbox file at a time (a lock file says so).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import InputError
from .result import LineResult
from .sinks import Sink

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    created REAL NOT NULL,
    UNIQUE (sink, id)
);
CREATE INDEX IF NOT EXISTS outbox_sink_seq ON outbox (sink, seq);
"""


@dataclass
class SinkStats:
    """One sink's delivery: messages delivered, failed attempts, dropped (outbox full), waiting, last error."""

    delivered: int = 0
    failures: int = 0
    dropped: int = 0
    backlog: int = 0
    last_error: str = ""


class Outbox:
    """Results for ``sinks``, kept in the SQLite file ``path`` until each sink has them.

    Parameters
    ----------
    path:
        The outbox file (created with its folder if missing).
    sinks:
        Where results go; each gets every result, in order, on a thread of its own.
    max_messages:
        Most messages waiting per sink; publishing past it drops the oldest of that sink (logged, counted).
    backoff_s:
        First and longest wait after a failed delivery (doubling in between).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sinks: Sequence[Sink],
        max_messages: int = 100_000,
        backoff_s: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        if max_messages < 1:
            raise InputError(f"max_messages must be at least 1, got {max_messages}")
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise InputError(f"the same sink is named twice: {', '.join(names)}")
        self.path, self.sinks, self.max_messages, self.backoff_s = Path(path), list(sinks), max_messages, backoff_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lockfile = _lock(self.path.with_name(self.path.name + ".lock"))
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = {name: threading.Event() for name in names}
        self._threads: list[threading.Thread] = []
        self.stats = {name: SinkStats(backlog=self._count(name)) for name in names}
        stale = [row[0] for row in self._db.execute("SELECT DISTINCT sink FROM outbox") if row[0] not in self.stats]
        if stale:
            log.warning("outbox %s holds messages for sinks no longer given (kept): %s", self.path, ", ".join(stale))
        waiting = sum(s.backlog for s in self.stats.values())
        if waiting:
            log.info("outbox %s: %d messages from an earlier run to deliver", self.path, waiting)

    def __enter__(self) -> Outbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Outbox:
        """Start a delivery thread per sink (once)."""
        if not self._threads:
            for sink in self.sinks:
                thread = threading.Thread(target=self._deliver, args=(sink,), name=f"indad-{sink.name}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop delivering (what is left waits on disk for the next start) and close the sinks and the file."""
        self._stop.set()
        for event in self._wake.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads = []
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # a sink that fails to close must not keep the others open
                log.warning("closing %s: %s", sink.name, exc)
        with self._lock:
            self._db.close()
        self._lockfile.close()

    def publish(self, results: list[LineResult]) -> None:
        """Keep ``results`` for every sink, synced to disk before returning (a result already there, same id and
        sink, is kept once)."""
        if not self.sinks or not results:
            return
        now = time.time()
        rows = [(s.name, r.id, r.to_json(), now) for r in results for s in self.sinks]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO outbox (sink, id, body, created) VALUES (?, ?, ?, ?)", rows)
                for sink in self.sinks:
                    self._trim(sink.name)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            for sink in self.sinks:
                self.stats[sink.name].backlog = self._count(sink.name)
        for event in self._wake.values():
            event.set()

    def backlog(self) -> int:
        """Messages waiting, all sinks together."""
        return sum(s.backlog for s in self.stats.values())

    def wait_empty(self, timeout_s: float) -> bool:
        """Wait until every message is delivered (True) or ``timeout_s`` has passed (False)."""
        end = time.monotonic() + timeout_s
        while self.backlog() and time.monotonic() < end:
            time.sleep(0.02)
        return not self.backlog()

    def _count(self, sink: str) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox WHERE sink = ?", (sink,)).fetchone()[0])

    def _trim(self, sink: str) -> None:
        """Drop the oldest messages of ``sink`` beyond :attr:`max_messages` (inside the caller's transaction)."""
        excess = self._count(sink) - self.max_messages
        if excess > 0:
            self._db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE sink = ? ORDER BY seq LIMIT ?)",
                (sink, excess),
            )
            self.stats[sink].dropped += excess
            log.warning("outbox full for %s: dropped its %d oldest results", sink, excess)

    def _oldest(self, sink: str) -> tuple[int, str] | None:
        with self._lock:
            if not _open(self._db):
                return None
            row = self._db.execute(
                "SELECT seq, body FROM outbox WHERE sink = ? ORDER BY seq LIMIT 1", (sink,)
            ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def _done(self, sink: str, seq: int) -> None:
        with self._lock:
            if not _open(self._db):  # closed while this message was on its way: it is sent again next time
                return
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            stats = self.stats[sink]
            stats.delivered += 1
            stats.backlog = self._count(sink)

    def _deliver(self, sink: Sink) -> None:
        """A sink's delivery loop: oldest message first, the same one again after a failure (with back-off)."""
        failures, wake, stats = 0, self._wake[sink.name], self.stats[sink.name]
        while not self._stop.is_set():
            wake.clear()
            message = self._oldest(sink.name)
            if message is None:
                wake.wait(1.0)
                continue
            seq, body = message
            try:
                sink.send(LineResult.from_dict(json.loads(body)))
            except Exception as exc:  # the receiver is down or refused: the message waits on disk
                failures += 1
                stats.failures += 1
                stats.last_error = str(exc) or type(exc).__name__
                delay = min(self.backoff_s[1], self.backoff_s[0] * 2 ** min(failures - 1, 30))
                log.warning(
                    "%s: delivery failed (%s); %d results waiting, retry in %.1f s",
                    sink.name, stats.last_error, stats.backlog, delay,
                )  # fmt: skip
                self._stop.wait(delay)
                continue
            if failures:
                log.info("%s: delivering again after %d failed attempts", sink.name, failures)
                failures = 0
            self._done(sink.name, seq)


def _open(db: sqlite3.Connection) -> bool:
    """Whether ``db`` is still open."""
    try:
        db.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return False
    return True


def _lock(path: Path) -> IO[str]:
    """Hold an exclusive lock on ``path`` while the returned file is open; an error if another process has it."""
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held open as long as the outbox)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise InputError(f"outbox {path.with_suffix('')} is in use by another indad process") from None
    return handle


def register_metrics(registry: Any, outbox: Outbox) -> None:
    """Expose ``outbox``'s counters in a Prometheus ``registry``: ``indad_outbox_backlog{sink}`` and
    ``indad_outbox_delivered_total``, ``_failures_total``, ``_dropped_total`` (by sink)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class Collector:
        def collect(self) -> Iterator[Any]:
            backlog = GaugeMetricFamily("indad_outbox_backlog", "Results waiting for a sink", labels=["sink"])
            counters = {
                key: CounterMetricFamily(f"indad_outbox_{key}", text, labels=["sink"])
                for key, text in (
                    ("delivered", "Results delivered to a sink"),
                    ("failures", "Failed delivery attempts"),
                    ("dropped", "Results dropped because the outbox was full"),
                )
            }
            for name, stats in outbox.stats.items():
                backlog.add_metric([name], stats.backlog)
                for key, family in counters.items():
                    family.add_metric([name], getattr(stats, key))
            yield backlog
            yield from counters.values()

    registry.register(Collector())
