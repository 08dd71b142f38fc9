"""Frames scored per second from a video source, and what the sinks add: latency p50 / p99, measured in one run.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/line.py [--data-root ../shared/datasets] [--image-size 128]
        [--threads 2] [--frames 120] [--broker-down 30]

PatchCore (default offline config but ``--image-size``) is fitted on hazelnut_reduced's good training images.
A video (MJPG ``.avi``, 256 x 256, ``--frames`` frames) is written from its test and training images with
OpenCV. Every frame is scored through the result pipeline, in one run: a pass scoring alone (frames/s, with the
video's decoding), a pass with the sinks (the persistent outbox, an MQTT broker: Debian's mosquitto on
127.0.0.1, and a webhook receiver on 127.0.0.1), then a paired pass where each frame goes through both pipelines
in turn (the same load for both: the added latency p50 / p99 of ``Pipeline.run``, which with sinks includes the
synced write to the outbox), and a last pass scoring alone. With sinks: the time until the webhook receiver and
an MQTT subscriber have each result. With ``--broker-down S``: 200 results with the broker stopped
for S seconds in the middle; all must reach the subscriber, in order (the issue's fault, at its full 30 s).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indad.export.model_file import read_model_info
from indad.line.outbox import Outbox
from indad.line.pipeline import Input, Pipeline
from indad.line.result import LineResult
from indad.line.sinks import MqttSink, WebhookSink
from indad.line.sources import open_source


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds."""
    a = np.asarray(values) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2)}


class Broker:
    """mosquitto on 127.0.0.1 (persistence on, so a subscriber's session outlives a restart)."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        config = self.folder / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.folder}/\n"
        )
        self.process = subprocess.Popen([self.binary, "-c", str(config)], stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


class Arrivals:
    """When each result id arrived (first time), from the webhook receiver or the MQTT subscriber."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.order: list[str] = []
        self.lock = threading.Lock()

    def add(self, result_id: str) -> None:
        with self.lock:
            if result_id not in self.at:
                self.at[result_id] = time.time()
                self.order.append(result_id)


def webhook_receiver(arrivals: Arrivals) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            arrivals.add(json.loads(body)["id"])
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hook"


def subscriber(url: str, arrivals: Arrivals, topic: str = "indad/#") -> Any:
    import paho.mqtt.client as mqtt

    from indad.line.result import new_id

    port = int(url.rsplit(":", 1)[1])
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{new_id()[:8]}", clean_session=False)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.on_message = lambda c, u, m: arrivals.add(json.loads(m.payload)["id"])
    client.reconnect_delay_set(1, 1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(0.5)
    return client


def make_video(images: list[Path], path: Path, frames: int) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (256, 256))
    for i in range(frames):
        writer.write(cv2.resize(cv2.imread(str(images[i % len(images)])), (256, 256)))
    writer.release()
    return path


def score_pass(video: Path, pipeline: Pipeline) -> tuple[float, list[float], list[LineResult]]:
    """Frames per second over the video, each frame's pipeline time (s), and the results."""
    source = open_source(str(video))
    times, results = [], []
    start = time.perf_counter()
    for frame in source.frames(threading.Event(), lambda i: True):
        t0 = time.perf_counter()
        results.append(pipeline.run([Input(frame.source, frame.image)])[0].result)
        times.append(time.perf_counter() - t0)
    return len(times) / (time.perf_counter() - start), times, results


def paired(video: Path, alone: Pipeline, with_sinks: Pipeline) -> tuple[list[float], list[float], list[LineResult]]:
    """Each frame through both pipelines in turn (which goes first alternates): the same load for both."""
    source = open_source(str(video))
    times: dict[str, list[float]] = {"alone": [], "sinks": []}
    results = []
    for frame in source.frames(threading.Event(), lambda i: True):
        order = [("alone", alone), ("sinks", with_sinks)]
        for key, pipeline in order if frame.index % 2 else order[::-1]:
            t0 = time.perf_counter()
            result = pipeline.run([Input(frame.source, frame.image)])[0].result
            times[key].append(time.perf_counter() - t0)
            if key == "sinks":
                results.append(result)
    return times["alone"], times["sinks"], results


def delivery(results: list[LineResult], arrivals: Arrivals) -> dict[str, float]:
    """Time from each result's creation to its arrival (p50 / p99)."""
    lags = [arrivals.at[r.id] - datetime.fromisoformat(r.time).timestamp() for r in results if r.id in arrivals.at]
    return {"delivered": len(lags), **percentiles(lags)}


def broker_down(tmp: Path, broker: Broker, seconds: float) -> dict[str, Any]:
    """200 results, the broker stopped for ``seconds`` after the first 100: all delivered, in order?"""
    from indad.line.result import new_id, utc_now

    arrivals = Arrivals()
    client = subscriber(broker.url, arrivals, "indad/down/#")
    results = [
        LineResult(new_id(), utc_now(), f"frame#{i}", "", 8, 8, float(i), None, None, None, None, "down", "v", None, "")
        for i in range(200)
    ]
    with Outbox(tmp / "down.sqlite", [MqttSink(broker.url, timeout_s=2)], backoff_s=(0.5, 10.0)) as outbox:
        for r in results[:100]:
            outbox.publish([r])
        time.sleep(1.0)
        broker.stop()
        for r in results[100:]:
            outbox.publish([r])
        time.sleep(seconds)
        back = time.monotonic()
        broker.start()
        drained = outbox.wait_empty(120)
        drain_s = time.monotonic() - back
    end = time.monotonic() + 30
    while len(arrivals.order) < 200 and time.monotonic() < end:
        time.sleep(0.05)
    client.loop_stop()
    return {
        "down_s": seconds,
        "delivered": len(arrivals.order),
        "in_order": arrivals.order == [r.id for r in results],
        "outbox_drained": drained,
        "s_from_broker_back_to_drained": round(drain_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=os.environ.get("INDAD_DATA_DIR", "../shared/datasets"))
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--broker-down", type=float, default=0.0, help="seconds the broker is down (0: skip)")
    args = parser.parse_args()

    import torch

    from indad.inference import open_scorer
    from indad.methods import PatchCore

    torch.set_num_threads(args.threads)
    data = Path(args.data_root) / "hazelnut_reduced"
    report: dict[str, Any] = {"image_size": args.image_size, "threads": args.threads, "frames": args.frames}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model_path = tmp / "hazelnut.indad"
        PatchCore(image_size=args.image_size, progress=False).fit(data, holdout=0.1).save(model_path)
        images = sorted((data / "test").rglob("*.png")) + sorted((data / "train").rglob("*.png"))
        video = make_video(images, tmp / "line.avi", args.frames)
        scorer = open_scorer(model_path)
        info = read_model_info(model_path)
        alone = Pipeline(scorer, info, pictures="none")
        score_pass(video, alone)  # warm-up
        fps_a, _, _ = score_pass(video, alone)

        broker_folder = tmp / "broker"
        broker_folder.mkdir()
        broker = Broker(broker_folder)
        broker.start()
        hook_arrivals, mqtt_arrivals = Arrivals(), Arrivals()
        server, hook_url = webhook_receiver(hook_arrivals)
        client = subscriber(broker.url, mqtt_arrivals)
        sinks = [MqttSink(broker.url), WebhookSink(hook_url)]
        with Outbox(tmp / "outbox.sqlite", sinks) as outbox:
            with_sinks = Pipeline(scorer, info, pictures="none", publisher=outbox)
            fps_s, _, _ = score_pass(video, with_sinks)
            outbox.wait_empty(60)
            times_alone, times_sinks, results = paired(video, alone, with_sinks)
            outbox.wait_empty(60)
        time.sleep(0.5)
        client.loop_stop()
        server.shutdown()
        fps_b, _, _ = score_pass(video, alone)

        p_alone, p_sinks = percentiles(times_alone), percentiles(times_sinks)
        report["frames_per_s"] = {"alone": [round(fps_a, 2), round(fps_b, 2)], "with_sinks": round(fps_s, 2)}
        report["per_frame_paired"] = {"alone": p_alone, "with_sinks": p_sinks}
        report["added_by_sinks_ms"] = {k: round(p_sinks[k] - p_alone[k], 2) for k in p_alone}
        report["to_webhook"] = delivery(results, hook_arrivals)
        report["to_mqtt_subscriber"] = delivery(results, mqtt_arrivals)
        if args.broker_down > 0:
            report["broker_down"] = broker_down(tmp, broker, args.broker_down)
        broker.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
