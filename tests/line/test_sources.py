"""Frame sources on real streams: a video file written by OpenCV, an MJPEG stream served on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests

from indad.errors import IndadError, InputError
from indad.export.model_file import read_model_info
from indad.line.pipeline import Pipeline
from indad.line.sources import MjpegSource, Reconnect, open_source
from indad.line.stream import StreamRunner, Triggers, TriggerServer, prometheus_text, trigger_id_of
from tests.line.conftest import Broker, MjpegServer, frames_of, jpeg, wait_for

pytest.importorskip("cv2")

QUICK = Reconnect(first_s=0.05, longest_s=0.2, attempts=3)


def test_video_file_every_third_frame(video_file: Path) -> None:
    source = open_source(str(video_file))
    frames = list(source.frames(threading.Event(), lambda i: i % 3 == 0))
    assert [f.index for f in frames] == list(range(3, 31, 3))
    assert source.stats.frames == 30 and source.stats.decoded == 10 and source.stats.corrupt == 0
    assert frames[0].image.size == (96, 96) and frames[0].source == f"{video_file}#3"


def test_stream_that_ends_stalls_and_sends_a_corrupt_frame(tiny_root: Path) -> None:
    parts = [jpeg(f) for f in frames_of(tiny_root, 14)]
    server = MjpegServer(
        [
            [*parts[:5], b"corrupt", *parts[5:8]],  # a corrupt frame, then the stream ends
            [*parts[8:10], None],  # a stall: the connection stays open, nothing comes
            parts[10:14],  # the rest, then the end
        ]
    )
    server.start()
    try:
        source = MjpegSource(server.url, stall_s=1.0, reconnect=QUICK)
        start = time.monotonic()
        frames = list(source.frames(threading.Event(), lambda i: True))
        elapsed = time.monotonic() - start
    finally:
        server.stop()
    s = source.stats
    assert len(frames) == 14 and s.decoded == 14 and s.corrupt == 1 and s.frames == 15
    assert s.stalls == 1 and s.ends >= 2 and s.reconnects >= 3
    assert [f.index for f in frames] == [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    assert elapsed < 10  # gave up after 3 attempts in a row without frames: no hang


def test_opencv_stream_that_stalls_is_opened_again(tiny_root: Path) -> None:
    """The OpenCV (FFmpeg) path of rtsp:// and cameras, here on the HTTP MJPEG stream: a stall is a time-out."""
    from indad.line.sources import CaptureSource

    parts = [jpeg(f) for f in frames_of(tiny_root, 12)]
    server = MjpegServer([[*parts[:6], None], parts[6:]], fps=30)
    server.start()
    try:
        source = CaptureSource(server.url, live=True, stall_s=1.0, reconnect=Reconnect(0.05, 0.2, attempts=2))
        frames = list(source.frames(threading.Event(), lambda i: True))
    finally:
        server.stop()
    assert len(frames) == 12 and source.stats.stalls == 1 and source.stats.reconnects >= 1


def test_an_unreachable_stream_gives_up_without_hanging() -> None:
    source = MjpegSource("http://127.0.0.1:9/none.mjpg", stall_s=0.5, reconnect=QUICK)
    assert list(source.frames(threading.Event(), lambda i: True)) == []
    assert source.stats.connect_failures == 4 and source.stats.reconnects == 3


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("usb:first", "usb:N"),
        ("/no/such/video.avi", "no such video file"),
        ("genicam:/no/such/producer.cti", "harvesters|producer"),
        ("genicam:/x.cti#a", "number"),
    ],
)
def test_bad_source_specs_say_what_is_missing(spec: str, message: str) -> None:
    with pytest.raises(IndadError, match=message):
        open_source(spec)


def test_a_file_opencv_cannot_read(tmp_path: Path) -> None:
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video")
    with pytest.raises(InputError, match="cannot read the video"):
        list(open_source(str(bad)).frames(threading.Event(), lambda i: True))


def test_trigger_ids() -> None:
    assert trigger_id_of(b'{"id": "part-7"}') == "part-7"
    assert trigger_id_of(b"part-8") == "part-8"
    assert trigger_id_of(b"") is None


def test_stream_scores_every_nth_frame_and_triggered_ones(line_model: Path, tiny_root: Path, tmp_path: Path) -> None:
    from indad.inference import open_scorer

    scorer = open_scorer(line_model)
    parts = [jpeg(f) for f in frames_of(tiny_root, 40)]
    server = MjpegServer([parts], fps=20)
    server.start()
    triggers = Triggers()
    pipeline = Pipeline(scorer, read_model_info(line_model), pictures="defective")
    runner = StreamRunner(MjpegSource(server.url, stall_s=1.0, reconnect=QUICK), pipeline, tmp_path, 10, triggers)
    trigger_server = TriggerServer(triggers, lambda: prometheus_text(runner.stats, None))
    try:
        thread = threading.Thread(target=runner.run)
        thread.start()
        wait_for(lambda: runner.stats.scored >= 1, 30, "the first scored frame")
        url = f"http://127.0.0.1:{trigger_server.port}"
        reply = requests.post(f"{url}/v1/trigger", json={"id": "part-42"}, timeout=5)
        assert reply.status_code == 202 and reply.json() == {"trigger_id": "part-42"}
        thread.join(30)
        metrics = requests.get(f"{url}/metrics", timeout=5).text
    finally:
        trigger_server.close()
        server.stop()
    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    triggered = [r for r in results if r["trigger_id"] == "part-42"]
    assert len(triggered) == 1 and triggered[0]["score"] is not None
    every = [r for r in results if r["trigger_id"] is None]
    assert [r["source"].rsplit("#", 1)[1] for r in every] == ["10", "20", "30", "40"]
    assert all(r["model"] == "parts" and r["model_version"] == read_model_info(line_model).version for r in results)
    assert "indad_stream_scored_total 5" in metrics and "indad_stream_triggers_total 1" in metrics


def test_stream_scores_a_frame_per_mqtt_trigger(
    line_model: Path, tiny_root: Path, tmp_path: Path, broker: Broker
) -> None:
    import paho.mqtt.publish as publish

    from indad.inference import open_scorer
    from indad.line.stream import MqttTrigger

    parts = [jpeg(f) for f in frames_of(tiny_root, 60)]
    server = MjpegServer([parts], fps=20)
    server.start()
    triggers = Triggers()
    mqtt_trigger = MqttTrigger(triggers, broker.url, "line/1/trigger")
    pipeline = Pipeline(open_scorer(line_model), read_model_info(line_model), pictures="none")
    runner = StreamRunner(MjpegSource(server.url, stall_s=1.0, reconnect=QUICK), pipeline, tmp_path, None, triggers)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,))
    try:
        thread.start()
        wait_for(lambda: mqtt_trigger.client.is_connected() and runner.source.stats.frames > 2, 30, "the stream")
        time.sleep(0.3)  # the subscription acknowledged
        for n, trigger in enumerate(("a-1", "a-2"), start=1):
            publish.single("line/1/trigger", json.dumps({"id": trigger}), qos=1, port=broker.port)
            wait_for(lambda n=n: runner.stats.scored >= n, 30, f"the frame of trigger {trigger}")
    finally:
        stop.set()
        thread.join(30)
        mqtt_trigger.close()
        server.stop()
    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["trigger_id"] for r in results] == ["a-1", "a-2"]
