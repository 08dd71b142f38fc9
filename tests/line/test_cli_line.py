"""The line from the command line: ``indad stream``, and ``--mqtt`` / ``--webhook`` on ``predict`` and ``watch``."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from indad.cli.main import cli
from indad.export.model_file import read_model_info
from tests.line.conftest import Broker, Receiver, Subscriber, wait_for


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_stream_a_video_file_to_a_webhook(
    line_model: Path, video_file: Path, tmp_path: Path, receiver: Receiver
) -> None:
    out = tmp_path / "out"
    output = invoke(
        "stream", line_model, video_file, "--out", out, "--every", "5", "--pictures", "all",
        "--webhook", receiver.url, "--webhook-secret", "k",
    )  # fmt: skip
    assert "6 frames scored" in output and "0 corrupt" in output
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["source"] for r in results] == [f"{video_file}#{i}" for i in range(5, 31, 5)]
    assert [b["id"] for b in receiver.bodies()] == [r["id"] for r in results]
    assert all(r["model"] == "parts" and r["width"] == 96 and len(r["image_hash"]) == 64 for r in results)
    assert len(list((out / "heatmaps").iterdir())) == 6


def test_stream_says_what_genicam_needs(line_model: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["stream", str(line_model), "genicam:/nowhere.cti", "--out", str(tmp_path)])
    assert result.exit_code == 1 and ("harvesters" in result.output or ".cti" in result.output), result.output


def test_predict_sends_every_result_and_keeps_its_csv(
    line_model: Path, tiny_root: Path, tmp_path: Path, receiver: Receiver
) -> None:
    out = tmp_path / "pred"
    invoke("predict", line_model, tiny_root / "test", "--out", out, "--quiet", "--webhook", receiver.url)
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    sent = receiver.bodies()
    assert [b["source"] for b in sent] == [r["path"] for r in rows]
    assert [f"{b['score']:.6g}" for b in sent] == [r["score"] for r in rows]
    assert {b["model_version"] for b in sent} == {read_model_info(line_model).version}


def test_watch_once_publishes_to_mqtt_once_per_file(
    line_model: Path, tiny_root: Path, tmp_path: Path, broker: Broker
) -> None:
    inbox = tmp_path / "inbox"
    shutil.copytree(tiny_root / "test" / "good", inbox)
    subscriber = Subscriber(broker.url)
    try:
        args = ("watch", line_model, inbox, "--out", tmp_path / "res", "--once", "--settle", "0", "--poll", "0.05")
        invoke(*args, "--mqtt", broker.url)
        wait_for(lambda: len(subscriber.messages) >= 2, 20, "two results on MQTT")
        invoke(*args, "--mqtt", broker.url)  # a second run scores nothing again
    finally:
        subscriber.close()
    assert len(subscriber.ids()) == 2
    assert {topic for topic, _, _ in subscriber.messages} == {"indad/parts/result"}
    ledger = [json.loads(line) for line in (tmp_path / "res" / "predictions.jsonl").read_text().splitlines()]
    assert sorted(p["source"] for _, p, _ in subscriber.messages) == sorted(r["path"] for r in ledger)


@pytest.mark.parametrize("option", ["--mqtt", "--webhook"])
def test_bad_sink_urls_are_refused(line_model: Path, tmp_path: Path, option: str) -> None:
    result = CliRunner().invoke(cli, ["watch", str(line_model), str(tmp_path), "--out", str(tmp_path / "o"), "--once",
                                      option, "ftp://nowhere"])  # fmt: skip
    assert result.exit_code == 1 and "ftp://nowhere" in result.output


def test_kill_9_of_indad_stream_then_restart_delivers_what_waited(
    line_model: Path, video_file: Path, tmp_path: Path, receiver: Receiver
) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.helpers import REPO

    receiver.stop()  # down: the first run's results wait in the outbox
    outbox = tmp_path / "outbox.sqlite"
    first = tmp_path / "first"
    cmd = [sys.executable, "-c", "from indad.cli.main import main; main()", "stream", str(line_model), str(video_file)]
    options = ["--out", str(first), "--every", "5", "--webhook", receiver.url, "--outbox", str(outbox)]
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"}
    process = subprocess.Popen([*cmd, *options], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ledger = first / "results.jsonl"
        wait_for(lambda: ledger.is_file() and len(ledger.read_text().splitlines()) == 6, 120, "6 results")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    waiting = [json.loads(line)["id"] for line in ledger.read_text().splitlines()]
    receiver.start()
    invoke("stream", line_model, video_file, "--out", tmp_path / "second", "--every", "10",
           "--webhook", receiver.url, "--outbox", outbox)  # fmt: skip
    fresh = [json.loads(line)["id"] for line in (tmp_path / "second" / "results.jsonl").read_text().splitlines()]
    assert [b["id"] for b in receiver.bodies()] == waiting + fresh and len(fresh) == 3
