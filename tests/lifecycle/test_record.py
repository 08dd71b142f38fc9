"""The prediction record on SQLite and on a real PostgreSQL server; a locked, full or corrupt database."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from indad.lifecycle.record import (
    RESULT_FIELDS,
    InvalidLabelError,
    PredictionRecord,
    RecordError,
    UnknownResultError,
)


def result(i: int, score: float = 1.0, **more) -> dict:
    """A result as the line's ``LineResult`` gives it."""
    return {
        "id": f"r{i:04d}",
        "time": f"2026-12-03T10:00:{i:02d}Z",
        "source": f"cam1/{i}.png",
        "image_hash": f"{i:064x}",
        "width": 640,
        "height": 480,
        "score": score,
        "normalized_score": score / 2.0,
        "decision": "defective" if score >= 2.0 else "good",
        "threshold": 2.0,
        "regions": [{"area": 12, "bbox": [1, 2, 3, 4]}],
        "model": "line1",
        "model_version": "20261203-100000-abcdef",
        "trigger_id": f"t{i}",
        "error": None,
    } | more


@pytest.fixture(params=["sqlite", "postgresql"])
def record(request, tmp_path: Path) -> PredictionRecord:
    if request.param == "sqlite":
        return PredictionRecord(tmp_path / "record.db")
    url = request.getfixturevalue("postgres_url")
    rec = PredictionRecord(url)
    rec.metadata.drop_all(rec.engine)  # a fresh record per test on the shared server
    return rec


def test_results_round_trip_with_every_field(record: PredictionRecord):
    for i, score in enumerate([1.0, 2.5, 1.9, 3.0]):
        assert record.write(result(i, score)) == f"r{i:04d}"
    assert record.count() == 4 and record.errors == 0
    got = record.get("r0001")
    assert got is not None and set(got) == set(RESULT_FIELDS)
    assert got["score"] == 2.5 and got["decision"] == "defective" and got["width"] == 640
    assert json.loads(got["regions"]) == [{"area": 12, "bbox": [1, 2, 3, 4]}]
    assert [r["id"] for r in record.rows()] == ["r0003", "r0002", "r0001", "r0000"]  # newest first
    # most uncertain first: normalised score nearest 1 (scores 1.9, 2.5, 1.0 / 3.0)
    assert [r["id"] for r in record.rows(order="uncertain")][:2] == ["r0002", "r0001"]
    assert record.get("nope") is None


def test_feedback_last_label_wins_and_history_keeps_all(record: PredictionRecord):
    record.write(result(1, 2.5))
    record.add_feedback("r0001", "false_alarm", "shadow of the gripper", "anna")
    record.add_feedback("r0001", "confirmed", "a real scratch after all", "ben")
    assert [f.label for f in record.history("r0001")] == ["false_alarm", "confirmed"]
    assert record.history("r0001")[0].reason == "shadow of the gripper"
    assert record.labels() == {"r0001": "confirmed"}
    assert record.rows()[0]["label"] == "confirmed"
    with pytest.raises(UnknownResultError, match="r9999"):
        record.add_feedback("r9999", "false_alarm")
    with pytest.raises(InvalidLabelError, match="maybe"):
        record.add_feedback("r0001", "maybe")


def test_a_locked_database_delays_writes_but_scoring_goes_on(tmp_path: Path):
    path = tmp_path / "record.db"
    rec = PredictionRecord(path, timeout_s=0.05, retry_s=0.0)
    rec.write(result(0))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the database
    for i in range(1, 4):
        rec.write(result(i))  # does not raise
    assert rec.errors >= 1 and len(rec.pending) == 3 and "locked" in rec.last_error
    other.execute("ROLLBACK")
    other.close()
    rec.write(result(4))  # the buffered results go in with the next one
    assert rec.pending == type(rec.pending)() and rec.count() == 5


def test_a_full_database_keeps_what_it_holds(tmp_path: Path):
    from sqlalchemy import event

    rec = PredictionRecord(tmp_path / "record.db", retry_s=0.0)
    rec.write(result(0))
    pages = sqlite3.connect(tmp_path / "record.db").execute("PRAGMA page_count").fetchone()[0]
    rec.engine.dispose()
    event.listen(rec.engine, "connect", lambda conn, _: conn.execute(f"PRAGMA max_page_count={pages}"))
    big = "x" * 200_000
    rec.write(result(1, error=big))  # no room
    assert rec.errors == 1 and "full" in rec.last_error and len(rec.pending) == 1
    assert rec.get("r0000") is not None and rec.count() == 1


def test_a_corrupt_database_is_reported_and_left_alone(tmp_path: Path, caplog):
    path = tmp_path / "record.db"
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    rec = PredictionRecord(path, retry_s=0.0)
    with caplog.at_level("ERROR", logger="indad"):
        rec.write(result(0))
    assert rec.errors == 1 and len(rec.pending) == 1 and "could not take" in caplog.text
    assert path.read_bytes() == before
    with pytest.raises(RecordError, match="cannot read the record"):
        rec.get("r0000")


def test_the_buffer_is_bounded_and_counts_what_it_drops(tmp_path: Path):
    path = tmp_path / "record.db"
    path.write_bytes(b"corrupt" * 100)
    rec = PredictionRecord(path, buffer_rows=3, retry_s=0.0)
    for i in range(5):
        rec.write(result(i))
    assert len(rec.pending) == 3 and rec.dropped == 2 and [r["id"] for r in rec.pending] == ["r0002", "r0003", "r0004"]


def test_images_are_kept_by_hash(tmp_path: Path):
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG fake")
    rec = PredictionRecord(tmp_path / "record.db", images=tmp_path / "images")
    h = rec.keep_image(image)
    rec.write({"id": "x", "image_hash": h, "source": "gone.png"})
    kept = rec.image_path(rec.get("x") or {})
    assert kept == tmp_path / "images" / f"{h}.png" and kept.read_bytes() == image.read_bytes()
