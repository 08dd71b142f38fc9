"""Real parts on 127.0.0.1 for the line tests: a mosquitto broker, a webhook receiver, an MJPEG stream, a video.

Each is started and stopped by its fixture; a missing binary or package skips the tests that need it.
"""

from __future__ import annotations

import http.server
import io
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from indad.line.result import LineResult, new_id, utc_now
from tests.helpers import free_port


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Wait until ``condition()`` holds; fail the test naming ``what`` after ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def make_result(i: int, model: str = "parts") -> LineResult:
    """A result numbered ``i`` (its source says which), as the pipeline would make it."""
    return LineResult(
        id=new_id(), time=utc_now(), source=f"frame#{i}", image_hash="0" * 64, width=8, height=8, score=float(i),
        normalized_score=float(i) / 10, decision="good", threshold=10.0, regions=[], model=model,
        model_version="abc", trigger_id=None, error="",
    )  # fmt: skip


@dataclass
class Broker:
    """A mosquitto broker on 127.0.0.1:``port``, stopped and started again on the same port by the tests.

    Persistence is on (a temp folder): a subscriber's QoS 1 session survives a restart of the broker.
    """

    binary: str
    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.folder / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.folder}/\nautosave_interval 1\n"
        )
        log = open(self.folder / "mosquitto.log", "a")  # noqa: SIM115 (the broker's output, kept open while it runs)
        self.process = subprocess.Popen([self.binary, "-c", str(config)], stdout=log, stderr=log)

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(listening, 10, "mosquitto to listen")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A running mosquitto (Debian's package; skipped without it)."""
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    pytest.importorskip("paho.mqtt")
    b = Broker(binary, tmp_path / "broker")
    b.folder.mkdir()
    b.start()
    try:
        yield b
    finally:
        b.stop()


class Subscriber:
    """A QoS 1 subscriber to ``indad/#`` with a session kept by the broker (it gets what was sent while away)."""

    def __init__(self, url: str, topic: str = "indad/#") -> None:
        import paho.mqtt.client as mqtt

        from indad.line.sinks import mqtt_address

        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{new_id()[:8]}", clean_session=False
        )
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload), m.retain))
        self.client.reconnect_delay_set(1, 1)
        address = mqtt_address(url)
        self.client.connect(address["host"], address["port"])
        self.client.loop_start()
        # Acknowledged by the broker: from here on its session (kept across restarts) holds the subscription.
        wait_for(self.subscribed.is_set, 10, "the subscription to be acknowledged")

    def ids(self) -> list[str]:
        """The result ids received, duplicates dropped (first one kept), in order of arrival."""
        seen: dict[str, None] = {}
        for _, payload, _ in self.messages:
            seen.setdefault(payload["id"], None)
        return list(seen)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Receiver:
    """A webhook receiver: records each POST (headers, JSON body); answers 500 ``fail`` times first."""

    port: int = field(default_factory=free_port)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail: int = 0
    answers: list[int] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = 500 if receiver.fail > 0 else 200
                receiver.fail -= 1 if receiver.fail > 0 else 0
                receiver.answers.append(status)
                if status == 200:
                    receiver.received.append((dict(self.headers.items()), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running webhook receiver on 127.0.0.1."""
    r = Receiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()


def frames_of(folder: Path, n: int, size: tuple[int, int] = (96, 96)) -> list[np.ndarray]:
    """``n`` RGB frames (``size``) from the images of ``folder``, in name order, repeating as needed."""
    files = sorted(p for p in folder.rglob("*.png"))
    return [np.asarray(Image.open(files[i % len(files)]).convert("RGB").resize(size)) for i in range(n)]


def jpeg(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@dataclass
class MjpegServer:
    """An HTTP MJPEG stream (multipart/x-mixed-replace) on 127.0.0.1 playing ``script`` per connection.

    ``script[k]`` is what the k-th connection gets: a list of parts (JPEG bytes; ``b"corrupt"`` a broken one;
    ``None``: stop sending and hold the connection, a stall), after which the connection is closed.
    """

    script: list[list[bytes | None]]
    fps: float = 50.0
    port: int = field(default_factory=free_port)
    connections: int = 0
    server: http.server.ThreadingHTTPServer | None = None
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        mjpeg = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                k = mjpeg.connections
                mjpeg.connections += 1
                parts = mjpeg.script[k] if k < len(mjpeg.script) else []
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for part in parts:
                        if part is None:
                            mjpeg.release.wait(30)
                            return
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                        self.wfile.write(f"Content-Length: {len(part)}\r\n\r\n".encode() + part + b"\r\n")
                        self.wfile.flush()
                        time.sleep(1 / mjpeg.fps)
                except OSError:
                    return

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture(scope="session")
def line_model(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small PatchCore (64 px, tiny random images, thresholds from 2 held-out images), saved."""
    from indad.methods import PatchCore

    path = tmp_path_factory.mktemp("line_model") / "parts.indad"
    model = PatchCore(image_size=64, batch_size=4, progress=False, f_coreset=0.25, n_reweight=3)
    model.fit(tiny_root, holdout=0.25).save(path)
    return path


@pytest.fixture(scope="session")
def video_file(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-frame MJPG ``.avi`` (96 x 96, 10 fps) made from the tiny test images with OpenCV's VideoWriter."""
    cv2 = pytest.importorskip("cv2")
    path = tmp_path_factory.mktemp("video") / "line.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 96))
    for frame in frames_of(tiny_root, 30):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path
