"""The prediction record: every scored image's result, and the operator's feedback on it, in a database.

SQLite (a file, nothing to install) by default; any SQLAlchemy database URL
(``postgresql+psycopg://user@host/db``) when a plant wants a server. Writing
never stops scoring: a locked, full or corrupt database is reported (log and
:attr:`PredictionRecord.errors`) and the rows wait in a bounded buffer, written
at the next chance; rows already recorded are never touched.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, ResourceError
from ..lineage import file_sha256, utc_now

log = logging.getLogger(__name__)

RESULT_FIELDS = (
    "id", "time", "source", "image_hash", "width", "height", "score", "normalized_score", "decision", "threshold",
    "regions", "model", "model_version", "trigger_id", "error",
)  # fmt: skip
"""A result's fields, in this order: those of the line's ``LineResult`` too (``regions`` is JSON text)."""
LABELS = ("false_alarm", "missed_defect", "confirmed")
"""What an operator may say about a result."""
FEEDBACK_FIELDS = ("id", "result_id", "label", "reason", "time", "who")
BUFFER_ROWS = 10_000
"""Results kept in memory while the database cannot take them; beyond, the oldest are dropped (and counted)."""


class RecordError(ResourceError):
    """The record's database cannot be opened or read."""


class UnknownResultError(InputError):
    """Feedback names a result the record does not hold."""


class InvalidLabelError(InputError):
    """Feedback with a label other than :data:`LABELS`."""


def database_url(target: str | os.PathLike) -> str:
    """The SQLAlchemy URL of ``target``: a URL as is, a path as an SQLite file."""
    text = str(target)
    return text if "://" in text else f"sqlite:///{Path(text).absolute()}"


def _tables(metadata: Any) -> tuple[Any, Any]:
    from sqlalchemy import Column, Float, Index, Integer, String, Table, Text

    results = Table(
        "results",
        metadata,
        Column("id", String(64), primary_key=True),
        Column("time", String(32), nullable=False),
        Column("source", Text),
        Column("image_hash", String(64)),
        Column("width", Integer),
        Column("height", Integer),
        Column("score", Float),
        Column("normalized_score", Float),
        Column("decision", String(16)),
        Column("threshold", Float),
        Column("regions", Text),
        Column("model", Text),
        Column("model_version", String(64)),
        Column("trigger_id", Text),
        Column("error", Text),
        Index("results_time", "time"),
    )
    feedback = Table(
        "feedback",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("result_id", String(64), nullable=False, index=True),
        Column("label", String(16), nullable=False),
        Column("reason", Text),
        Column("time", String(32), nullable=False),
        Column("who", Text),
    )
    return results, feedback


def normalise_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """A result as a row: every field of :data:`RESULT_FIELDS` (missing ones None, an id and time made up),
    ``regions`` as JSON text, numbers as numbers."""
    row = {name: result.get(name) for name in RESULT_FIELDS}
    row["id"] = str(row["id"] or uuid.uuid4().hex)
    row["time"] = str(row["time"] or utc_now())
    if row["regions"] is not None and not isinstance(row["regions"], str):
        row["regions"] = json.dumps(row["regions"])
    for name in ("score", "normalized_score", "threshold", "width", "height"):
        value: Any = row[name]
        kind = int if name in ("width", "height") else float
        row[name] = None if value in (None, "") else kind(value)
    for name in ("decision", "error", "source", "model", "model_version", "trigger_id"):
        row[name] = None if row[name] in (None, "") else str(row[name])
    return row


@dataclass(frozen=True)
class Feedback:
    """One operator's word on a result."""

    id: int
    result_id: str
    label: str
    reason: str | None
    time: str
    who: str | None


class PredictionRecord:
    """A record of results and feedback in a database (see the module's docstring).

    Parameters
    ----------
    target:
        An SQLite file path, or a SQLAlchemy database URL.
    images:
        Folder keeping each recorded image by its hash (None: images are not kept).
    timeout_s:
        How long a write waits for a locked SQLite database before giving up (the row is buffered).
    buffer_rows:
        Results kept in memory while the database fails.
    retry_s:
        After a failed write, the next attempt waits this long (results meanwhile are only buffered), so that a
        locked database does not slow scoring down by ``timeout_s`` per image.
    """

    def __init__(
        self,
        target: str | os.PathLike,
        images: str | os.PathLike | None = None,
        timeout_s: float = 1.0,
        buffer_rows: int = BUFFER_ROWS,
        retry_s: float = 5.0,
    ) -> None:
        try:
            from sqlalchemy import MetaData, create_engine
        except ImportError:
            raise RecordError("the prediction record needs SQLAlchemy: pip install 'indad[record]'") from None
        self.url = database_url(target)
        self.images = None if images is None else Path(images)
        args = {"timeout": timeout_s, "check_same_thread": False} if self.url.startswith("sqlite") else {}
        try:
            self.engine = create_engine(self.url, connect_args=args, pool_pre_ping=True)
        except Exception as exc:  # a bad URL or a missing driver: the user's to fix
            raise RecordError(f"cannot open the record {self.url}: {exc}") from None
        self.metadata = MetaData()
        self.results, self.feedback = _tables(self.metadata)
        self._ready = False
        self._lock = threading.Lock()
        self.pending: collections.deque[dict[str, Any]] = collections.deque(maxlen=buffer_rows)
        self.errors = 0
        self.dropped = 0
        self.written = 0
        self.last_error = ""
        self.retry_s = retry_s
        self._retry_at = 0.0

    @property
    def name(self) -> str:
        """The record's database URL, without a password."""
        return str(self.engine.url.render_as_string(hide_password=True))

    def __repr__(self) -> str:
        return f"PredictionRecord({self.name!r})"

    # ----------------------------------------------------------------- writing
    def _ensure_tables(self) -> None:
        if not self._ready:
            self.metadata.create_all(self.engine)
            self._ready = True

    def write(self, result: Mapping[str, Any]) -> str:
        """Record one result (the fields of :data:`RESULT_FIELDS`); returns its id. Never raises for the database:
        a failure is logged and counted, and the row waits in memory to be written with the next one."""
        row = normalise_result(result)
        with self._lock:
            if len(self.pending) == self.pending.maxlen:
                self.dropped += 1
            self.pending.append(row)
            if time.monotonic() >= self._retry_at:
                self._flush_locked()
        return row["id"]

    def flush(self) -> int:
        """Try to write the buffered results now; returns how many are still waiting."""
        with self._lock:
            self._flush_locked()
            return len(self.pending)

    def _flush_locked(self) -> None:
        if not self.pending:
            return
        rows = list(self.pending)
        try:
            self._ensure_tables()
            with self.engine.begin() as conn:
                conn.execute(self.results.insert(), rows)
        except Exception as exc:  # locked, full, corrupt, server gone: scoring goes on
            self.errors += 1
            self._retry_at = time.monotonic() + self.retry_s
            self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.error("the record %s could not take %d results (kept in memory): %s", self, len(rows), self.last_error)
            return
        self.written += len(rows)
        self.pending.clear()

    def keep_image(self, source: str | os.PathLike, image_hash: str | None = None) -> str:
        """Copy an image file into the images folder as ``HASH.ext`` (once); returns its hash."""
        image_hash = image_hash or file_sha256(source)
        if self.images is not None:
            target = self.images / f"{image_hash}{Path(source).suffix.lower()}"
            if not target.exists():
                from ..files import atomic_output

                with atomic_output(target) as tmp:
                    shutil.copyfile(source, tmp)
        return image_hash

    def keep_bytes(self, data: bytes, image_hash: str, suffix: str) -> None:
        """Keep an uploaded image's bytes in the images folder as ``HASH.suffix`` (once)."""
        if self.images is not None:
            target = self.images / f"{image_hash}{suffix.lower()}"
            if not target.exists():
                from ..files import atomic_output

                with atomic_output(target) as tmp:
                    tmp.write_bytes(data)

    def image_path(self, row: Mapping[str, Any]) -> Path | None:
        """Where a recorded result's image can be read: the kept copy by hash, else its source if it still exists."""
        if self.images is not None and row.get("image_hash"):
            kept = sorted(self.images.glob(f"{row['image_hash']}.*"))
            if kept:
                return kept[0]
        source = row.get("source")
        return Path(source) if source and Path(source).is_file() else None

    def close(self) -> None:
        """Write what is buffered if possible, then let the database go; say how many results were lost."""
        left = self.flush()
        if left:
            log.error("%d results could not be recorded in %s (%s)", left, self, self.last_error)
        self.engine.dispose()

    # ----------------------------------------------------------------- reading
    def _read(self, statement: Any) -> list[dict[str, Any]]:
        try:
            self._ensure_tables()
            with self.engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(statement)]
        except Exception as exc:
            raise RecordError(f"cannot read the record {self}: {exc}") from None

    def get(self, result_id: str) -> dict[str, Any] | None:
        """The result of this id, or None."""
        rows = self._read(self.results.select().where(self.results.c.id == str(result_id)))
        return rows[0] if rows else None

    def rows(self, limit: int | None = None, order: str = "newest") -> list[dict[str, Any]]:
        """Results, newest first (``order="newest"``) or the most uncertain first (``"uncertain"``: normalised
        score closest to 1), each with its latest ``label`` (None when not reviewed)."""
        from sqlalchemy import func

        c = self.results.c
        if order == "uncertain":
            ordering = [func.abs(func.coalesce(c.normalized_score, 1e9) - 1.0), c.time.desc()]
        elif order == "newest":
            ordering = [c.time.desc(), c.id.desc()]
        else:
            raise InputError(f"order must be newest or uncertain, got {order!r}")
        statement = self.results.select().order_by(*ordering)
        if limit is not None:
            statement = statement.limit(int(limit))
        labels = self.labels()
        return [row | {"label": labels.get(row["id"])} for row in self._read(statement)]

    def count(self) -> int:
        """How many results the record holds."""
        from sqlalchemy import func, select

        return int(self._read(select(func.count()).select_from(self.results))[0]["count_1"])

    # ----------------------------------------------------------------- feedback
    def add_feedback(self, result_id: str, label: str, reason: str | None = None, who: str | None = None) -> Feedback:
        """Record an operator's label for a result; the last one counts, all are kept.

        Raises :class:`InvalidLabelError` for a label not in :data:`LABELS` and
        :class:`UnknownResultError` for an id the record does not hold.
        """
        if label not in LABELS:
            raise InvalidLabelError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
        if self.get(result_id) is None:
            raise UnknownResultError(f"the record {self} holds no result {result_id!r}")
        given = Feedback(0, str(result_id), label, reason, utc_now(), who)
        values = {k: getattr(given, k) for k in FEEDBACK_FIELDS[1:]}
        try:
            with self.engine.begin() as conn:
                key: Any = conn.execute(self.feedback.insert().values(**values)).inserted_primary_key
        except Exception as exc:
            raise RecordError(f"cannot write feedback to the record {self}: {exc}") from None
        return dataclasses.replace(given, id=int(key[0]))

    def history(self, result_id: str) -> list[Feedback]:
        """Every label given to a result, oldest first."""
        c = self.feedback.c
        rows = self._read(self.feedback.select().where(c.result_id == str(result_id)).order_by(c.id))
        return [Feedback(**r) for r in rows]

    def labels(self) -> dict[str, str]:
        """Each reviewed result's latest label, by result id."""
        rows = self._read(self.feedback.select().order_by(self.feedback.c.id))
        return {r["result_id"]: r["label"] for r in rows}
