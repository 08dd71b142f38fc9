"""The persistent outbox with real receivers: a mosquitto broker and a webhook receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from indad.errors import InputError
from indad.line.outbox import Outbox
from indad.line.result import LineResult
from indad.line.sinks import SIGNATURE_HEADER, MqttSink, WebhookSink, make_sinks
from tests.helpers import REPO
from tests.line.conftest import Broker, Receiver, Subscriber, make_result, wait_for

FAST = (0.05, 0.5)  # back-off of the tests: first and longest wait after a failed delivery


def test_result_round_trips_through_json() -> None:
    result = make_result(3)
    assert LineResult.from_dict(json.loads(result.to_json())) == result
    with pytest.raises(InputError, match="missing"):
        LineResult.from_dict({"id": "x"})


def test_webhook_500_then_200_is_delivered_once_signed(tmp_path: Path, receiver: Receiver) -> None:
    receiver.fail = 3
    results = [make_result(i) for i in range(5)]
    with Outbox(tmp_path / "outbox.db", [WebhookSink(receiver.url, secret="s3cret")], backoff_s=FAST) as outbox:
        outbox.publish(results)
        assert outbox.wait_empty(20)
        stats = outbox.stats[f"webhook:{receiver.url}"]
    assert receiver.answers[:3] == [500, 500, 500] and stats.failures == 3 and stats.delivered == 5
    assert [b["id"] for b in receiver.bodies()] == [r.id for r in results]
    headers, body = receiver.received[0]
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected
    assert LineResult.from_dict(json.loads(body)) == results[0]


def test_webhook_down_then_up_delivers_in_order(tmp_path: Path, receiver: Receiver) -> None:
    receiver.stop()
    results = [make_result(i) for i in range(20)]
    with Outbox(tmp_path / "outbox.db", [WebhookSink(receiver.url, timeout_s=1)], backoff_s=FAST) as outbox:
        outbox.publish(results[:10])
        time.sleep(0.5)
        assert outbox.backlog() == 10
        receiver.start()
        outbox.publish(results[10:])
        assert outbox.wait_empty(20)
    assert [b["id"] for b in receiver.bodies()] == [r.id for r in results]


def test_a_result_published_twice_is_sent_once(tmp_path: Path, receiver: Receiver) -> None:
    result = make_result(1)
    with Outbox(tmp_path / "outbox.db", [WebhookSink(receiver.url)], backoff_s=FAST) as outbox:
        receiver.stop()
        outbox.publish([result])
        outbox.publish([result])
        assert outbox.backlog() == 1
        receiver.start()
        assert outbox.wait_empty(20)
    assert [b["id"] for b in receiver.bodies()] == [result.id]


def test_a_full_outbox_drops_its_oldest_and_says_so(tmp_path: Path, receiver: Receiver) -> None:
    receiver.stop()
    results = [make_result(i) for i in range(8)]
    outbox = Outbox(tmp_path / "outbox.db", [WebhookSink(receiver.url)], max_messages=5)
    try:
        outbox.publish(results)
        stats = outbox.stats[f"webhook:{receiver.url}"]
        assert (stats.backlog, stats.dropped) == (5, 3)
        receiver.start()
        outbox.start()
        assert outbox.wait_empty(20)
    finally:
        outbox.close()
    assert [b["id"] for b in receiver.bodies()] == [r.id for r in results[3:]]


def test_one_process_per_outbox(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db", []), pytest.raises(InputError, match="in use"):
        Outbox(tmp_path / "outbox.db", [])


def test_sink_urls_are_checked() -> None:
    with pytest.raises(InputError, match="mqtt://"):
        make_sinks(mqtt=["http://broker"])
    with pytest.raises(InputError, match="http"):
        make_sinks(webhooks=["ftp://x"])


# The fault is the broker down for 30 s in the middle of 200 results; here it is down for 3 s (the
# outbox does not care how long: benchmarks/line.py --broker-down 30 runs the full 30 s).
BROKER_DOWN_S = 3.0


def test_mqtt_broker_down_at_start_and_in_the_middle_of_200(tmp_path: Path, broker: Broker) -> None:
    subscriber = Subscriber(broker.url)
    broker.stop()  # down at start
    results = [make_result(i) for i in range(200)]
    sink = MqttSink(broker.url, timeout_s=2)
    try:
        with Outbox(tmp_path / "outbox.db", [sink], backoff_s=FAST) as outbox:
            outbox.publish(results[:50])
            wait_for(lambda: outbox.stats[sink.name].failures > 0, 20, "a failed delivery")
            assert outbox.backlog() == 50
            broker.start()
            for start in range(50, 100, 10):
                outbox.publish(results[start : start + 10])
                time.sleep(0.05)
            wait_for(lambda: outbox.backlog() < 40, 30, "part of the results to be delivered")
            broker.stop()  # down in the middle
            outbox.publish(results[100:])
            time.sleep(BROKER_DOWN_S)
            assert outbox.backlog() >= 100
            broker.start()
            assert outbox.wait_empty(60)
        end = time.monotonic() + 30
        while len(subscriber.ids()) < 200 and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        subscriber.close()
    assert subscriber.ids() == [r.id for r in results]  # all 200, in order (duplicates only with the same id)
    topic, payload, _ = subscriber.messages[-1]
    assert topic == "indad/parts/result" and LineResult.from_dict(payload).source == "frame#199"


def test_mqtt_last_result_is_retained_per_model(tmp_path: Path, broker: Broker) -> None:
    with Outbox(tmp_path / "outbox.db", [MqttSink(broker.url)], backoff_s=FAST) as outbox:
        outbox.publish([make_result(1, "a"), make_result(2, "b"), make_result(3, "a")])
        assert outbox.wait_empty(20)
    late = Subscriber(broker.url)  # subscribes after the results were sent: gets the retained ones
    try:
        wait_for(lambda: len(late.messages) >= 2, 10, "the retained results")
        time.sleep(0.2)
    finally:
        late.close()
    retained = {topic: payload["source"] for topic, payload, flag in late.messages if flag}
    assert retained == {"indad/a/result": "frame#3", "indad/b/result": "frame#2"}


KILLED = textwrap.dedent(
    """
    import sys, time
    from indad.line.outbox import Outbox
    from indad.line.sinks import WebhookSink
    from tests.line.conftest import make_result

    outbox = Outbox(sys.argv[1], [WebhookSink(sys.argv[2], timeout_s=1)], backoff_s=(0.05, 0.2)).start()
    results = [make_result(i) for i in range(30)]
    outbox.publish(results)
    print(" ".join(r.id for r in results), flush=True)
    time.sleep(60)  # killed here, its results still in the outbox
    """
)


def test_kill_9_with_results_waiting_then_restart_delivers(tmp_path: Path, receiver: Receiver) -> None:
    receiver.stop()  # nothing can be delivered before the kill
    env = os.environ | {"PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(tmp_path / "outbox.db"), receiver.url],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ids = process.stdout.readline().split()
        time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    assert len(ids) == 30
    receiver.start()
    with Outbox(tmp_path / "outbox.db", [WebhookSink(receiver.url)], backoff_s=FAST) as outbox:
        assert outbox.backlog() == 30
        assert outbox.wait_empty(20)
    assert [b["id"] for b in receiver.bodies()] == ids
