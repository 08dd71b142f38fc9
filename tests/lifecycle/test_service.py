"""The real service with a record: results carry their id and version, POST /v1/feedback, drift in /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from indad.export.model_file import read_header
from indad.lifecycle.record import PredictionRecord
from tests.service.conftest import Server, start_server, stop_server

TOKEN = "life-token"


@pytest.fixture(scope="module")
def served(tiny_model_file: Path, tmp_path_factory) -> Iterator[tuple[Server, Path]]:
    db = tmp_path_factory.mktemp("served") / "record.db"
    process, url = start_server(tiny_model_file, "--token", TOKEN, "--record", str(db), "--threads", "1")
    try:
        yield Server(url, {"Authorization": f"Bearer {TOKEN}"}, process), db
    finally:
        stop_server(process)


def test_results_are_recorded_and_feedback_is_taken(served, tiny_dataset: Path, tiny_model_file: Path):
    server, db = served
    images = sorted((tiny_dataset / "test" / "good").iterdir())
    reply = server.post_images(images)
    assert reply.ok, reply.text
    results = reply.json()["results"]
    version = read_header(tiny_model_file)["lineage"]["version"]
    assert all(r["model_version"] == version and r["id"] for r in results)
    record = PredictionRecord(db)
    row = record.get(results[0]["id"])
    assert row is not None and row["score"] == pytest.approx(results[0]["score"]) and row["source"] == images[0].name

    url = f"{server.url}/v1/feedback"
    body = {"result_id": results[0]["id"], "label": "false_alarm", "reason": "good part", "who": "op1"}
    first = requests.post(url, json=body, headers=server.headers, timeout=30)
    assert first.status_code == 200, first.text
    assert first.json()["label"] == "false_alarm" and first.json()["history"] == 1
    second = requests.post(url, json=body | {"label": "confirmed"}, headers=server.headers, timeout=30)
    assert second.status_code == 200 and second.json()["history"] == 2
    assert record.labels()[results[0]["id"]] == "confirmed"
    assert [f.label for f in record.history(results[0]["id"])] == ["false_alarm", "confirmed"]


def test_feedback_bad_input_is_a_clear_4xx(served):
    server, _ = served
    url = f"{server.url}/v1/feedback"
    unknown = requests.post(url, json={"result_id": "nope", "label": "confirmed"}, headers=server.headers, timeout=30)
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
    bad = requests.post(url, json={"result_id": "nope", "label": "maybe"}, headers=server.headers, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"] == "bad_parameter" and "label" in bad.text
    anonymous = requests.post(url, json={"result_id": "nope", "label": "confirmed"}, timeout=30)
    assert anonymous.status_code == 401


def test_drift_gauges_are_in_metrics(served, tiny_dataset: Path):
    server, _ = served
    server.post_images(sorted((tiny_dataset / "test" / "scratch").iterdir()))
    text = requests.get(f"{server.url}/metrics", headers=server.headers, timeout=30).text
    assert 'indad_drift_brightness_change{model="model"}' in text and "indad_drift_alarm" in text
