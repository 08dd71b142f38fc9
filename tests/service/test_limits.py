"""Issue 23: the service under overload and hostile clients (a real server on 127.0.0.1; raw sockets for the
clients a library would not play). Counts and times are small: each test takes a few seconds."""

from __future__ import annotations

import io
import signal
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.service.conftest import start_server, stop_server
from tests.service.rawhttp import closed_within, connect, multipart, read_response, request_bytes

HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
MAX_CONNECTIONS = 48
MAX_QUEUE = 8
REQUEST_PIXELS = 200_000  # three 256 x 256 images pass, four do not


class Limited:
    """A server with small limits, and its log."""

    def __init__(self, url: str, process, log) -> None:
        self.url, self.process, self.log = url, process, log

    def metrics(self) -> dict[str, float]:
        """The server's metrics by name and labels."""
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        return {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line and not line.startswith("#")
        }

    def log_text(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()


@pytest.fixture(scope="module")
def limited(hazelnut_model: Path) -> Iterator[Limited]:
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (read by the tests while the server runs)
    process, url = start_server(
        hazelnut_model,
        "--threads", "1", "--max-queue", str(MAX_QUEUE), "--max-images", "4",
        "--max-request-pixels", str(REQUEST_PIXELS), "--header-timeout", str(HEADER_TIMEOUT),
        "--body-timeout", str(BODY_TIMEOUT), "--keep-alive", "1", "--max-connections", str(MAX_CONNECTIONS),
        log=log,
    )  # fmt: skip
    try:
        yield Limited(url, process, log)
    finally:
        stop_server(process)
        log.close()


def _png(size: tuple[int, int], seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _post(url: str, files: list[tuple[str, bytes]], **params) -> requests.Response:
    parts = [("images", (name, data, "application/octet-stream")) for name, data in files]
    return requests.post(f"{url}/v1/predict", files=parts, params=params, timeout=60)


def test_admission_counts_the_images_of_requests_arriving_together(limited: Limited, hazelnut_images):
    """Items 1 and 7: 20 requests of 3 images at once with --max-queue 8: at most 8 images admitted at a time, the
    rest refused at once with 503 busy (counted by reason); the gauge shows images waiting; then all is served."""
    files = [(p.name, p.read_bytes()) for p in hazelnut_images[:3]]
    before = limited.metrics()
    statuses: list[tuple[int, dict]] = []
    lock, start = threading.Lock(), threading.Barrier(20)
    waiting: list[float] = []
    done = threading.Event()

    def client() -> None:
        start.wait()
        r = _post(limited.url, files)
        with lock:
            statuses.append((r.status_code, r.json()))

    def sample() -> None:
        while not done.is_set():
            waiting.append(limited.metrics()["indad_images_waiting"])
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=client) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done.set()
    sampler.join(10)
    codes = [s for s, _ in statuses]
    assert len(codes) == 20 and set(codes) == {200, 503}, codes
    assert all(body["error"] == "busy" for s, body in statuses if s == 503)
    assert all(len(body["results"]) == 3 for s, body in statuses if s == 200)
    assert 0 < max(waiting) <= MAX_QUEUE, waiting
    after = limited.metrics()
    refused = after['indad_refused_total{reason="busy"}'] - before.get('indad_refused_total{reason="busy"}', 0)
    assert refused == codes.count(503) and after["indad_images_waiting"] == 0
    assert _post(limited.url, files).status_code == 200


def test_more_files_than_max_images_is_413_too_many_images(limited: Limited):
    """Item 2: the multipart parser's own file limit must not answer first (400 bad_multipart)."""
    for n in (5, 9):
        r = _post(limited.url, [(f"{i}.png", _png((16, 16), i)) for i in range(n)])
        assert r.status_code == 413 and r.json()["error"] == "too_many_images", r.text
        assert "4" in r.json()["detail"]
    assert _post(limited.url, [(f"{i}.png", _png((16, 16), i)) for i in range(4)]).status_code == 200


def test_a_client_hanging_up_mid_upload_is_a_disconnect_not_an_internal_error(limited: Limited, hazelnut_images):
    """Item 3: Content-Length 1000, 10 bytes sent, closed: counted as a client disconnect, no traceback; a client
    gone before its images are scored does not get them scored."""
    before = limited.metrics()
    with connect(limited.url) as sock:
        head = request_bytes("POST", "/v1/predict?name=a.png", b"", {"Content-Type": "image/png"})
        sock.sendall(head.replace(b"Content-Length: 0", b"Content-Length: 1000") + b"0123456789")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        after = limited.metrics()
        if after.get('indad_errors_total{kind="client_disconnect"}', 0) > before.get(
            'indad_errors_total{kind="client_disconnect"}', 0
        ):
            break
        time.sleep(0.1)
    assert after['indad_errors_total{kind="client_disconnect"}'] == (
        before.get('indad_errors_total{kind="client_disconnect"}', 0) + 1
    )
    assert after.get('indad_errors_total{kind="internal"}', 0) == before.get('indad_errors_total{kind="internal"}', 0)
    assert "Traceback" not in limited.log_text()
    # A whole request sent, and the client gone at once: nothing scored for it.
    body, headers = multipart([(p.name, p.read_bytes()) for p in hazelnut_images[:3]])
    with connect(limited.url) as sock:
        sock.sendall(request_bytes("POST", "/v1/predict", body, headers))
        sock.shutdown(socket.SHUT_WR)
    time.sleep(1.5)
    later, gone = limited.metrics(), 'indad_errors_total{kind="client_disconnect"}'
    assert later["indad_images_scored_total"] == after["indad_images_scored_total"]
    assert later[gone] == after[gone] + 1


def test_idle_and_slow_connections_are_closed_and_healthz_stays_responsive(limited: Limited):
    """Item 4: idle connections and slow headers are closed after --header-timeout; with 30 of them open /healthz
    answers at once; a slow client sending a byte at a time does not reset the timer."""
    socks = [connect(limited.url) for _ in range(30)]
    for sock in socks[10:]:
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
    start = time.monotonic()
    assert requests.get(f"{limited.url}/healthz", timeout=2).ok
    assert time.monotonic() - start < 1.0
    trickle = connect(limited.url)
    stop = threading.Event()

    def drip() -> None:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n":
            if stop.wait(0.2):
                return
            try:
                trickle.sendall(bytes([byte]))
            except OSError:
                return

    dripper = threading.Thread(target=drip)
    dripper.start()
    try:
        for sock in socks:
            assert closed_within(sock, HEADER_TIMEOUT + 2.0) is not None
        assert closed_within(trickle, HEADER_TIMEOUT + 1.0) is not None
    finally:
        stop.set()
        dripper.join(10)
        for sock in [*socks, trickle]:
            sock.close()
    assert limited.metrics()['indad_refused_total{reason="header_timeout"}'] >= 20


def test_a_slow_body_gets_408_and_a_kept_alive_idle_connection_is_closed(limited: Limited):
    """Item 4: a body that stops coming is answered 408 body_timeout within --body-timeout; an idle kept-alive
    connection is closed after --keep-alive."""
    with connect(limited.url) as sock:
        head = request_bytes("POST", "/v1/predict?name=a.png", b"")
        sock.sendall(head.replace(b"Content-Length: 0", b"Content-Length: 1000") + b"0123456789")
        start = time.monotonic()
        response = read_response(sock, timeout=BODY_TIMEOUT + 3)
        assert response.status == 408 and response.json()["error"] == "body_timeout"
        assert time.monotonic() - start < BODY_TIMEOUT + 1.5
        assert closed_within(sock, 2.0) is not None
    with connect(limited.url) as sock:
        sock.sendall(request_bytes("GET", "/healthz"))
        assert read_response(sock).status == 200
        assert closed_within(sock, 3.0) is not None  # --keep-alive 1
    # Answered at once (413 from the declared length), its client then trickling the body: closed all the same.
    with connect(limited.url) as sock:
        head = request_bytes("POST", "/v1/predict?name=a.png", b"")
        sock.sendall(head.replace(b"Content-Length: 0", f"Content-Length: {2**30}".encode()))
        assert read_response(sock, timeout=5).status == 413
        stop, closed = time.monotonic() + HEADER_TIMEOUT + 2.0, False
        while time.monotonic() < stop and not closed:
            try:
                sock.sendall(b"x" * 100)
                closed = closed_within(sock, 0.2) is not None
            except OSError:
                closed = True
        assert closed


def test_oversized_headers_are_refused(limited: Limited):
    """Item 4: the headers buffered before they are complete are bounded (16 KiB): past it, 400 and closed."""
    with connect(limited.url) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"y" * 100) for i in range(200))
        )
        assert read_response(sock, timeout=5).status == 400
        assert closed_within(sock, 2.0) is not None


def test_past_max_connections_requests_get_503_overloaded_at_once(limited: Limited):
    """Item 4: the concurrency limit answers at once (JSON 503 overloaded, counted), and lifts when they close."""
    socks = [connect(limited.url) for _ in range(MAX_CONNECTIONS + 2)]
    try:
        time.sleep(0.2)
        with connect(limited.url) as sock:
            sock.sendall(request_bytes("GET", "/healthz"))
            response = read_response(sock, timeout=5)
        assert response.status == 503 and response.json()["error"] == "overloaded"
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.5)
    assert requests.get(f"{limited.url}/healthz", timeout=5).ok
    assert limited.metrics()['indad_refused_total{reason="overloaded"}'] >= 1


def test_a_request_over_the_pixel_budget_is_413_before_decoding(limited: Limited, hazelnut_images):
    """Item 5: four 256 x 256 images pass --max-request-pixels 200000; judged from their headers (these are cut
    short after the header: decoding them would fail with 422)."""
    whole = [(p.name, p.read_bytes()) for p in hazelnut_images[:4]]
    r = _post(limited.url, whole)
    assert r.status_code == 413 and r.json()["error"] == "too_many_request_pixels", r.text
    assert str(REQUEST_PIXELS) in r.json()["detail"]
    headers_only = [(name, data[:200]) for name, data in whole]
    r = _post(limited.url, headers_only)
    assert r.status_code == 413 and r.json()["error"] == "too_many_request_pixels", r.text
    assert _post(limited.url, whole[:3]).status_code == 200


def _corrupt_chunk(png: bytes, chunk: bytes) -> bytes:
    """``png`` with a byte of its first ``chunk`` chunk's data flipped (its CRC no longer matches)."""
    at = png.index(chunk) + 4 + 2
    return png[:at] + bytes([png[at] ^ 0xFF]) + png[at + 1 :]


def test_bad_parameters_and_undecodable_images_follow_one_rule(limited: Limited):
    """Item 6: a bad query parameter is a {error, detail} 400; a PNG cut short and a PNG with a corrupt chunk
    (header or data) are both 422 unreadable_image; data of no image format is 415."""
    png = _png((64, 64))
    r = requests.post(f"{limited.url}/v1/predict", params={"heatmap": "maybe"}, data=png, timeout=30)
    assert r.status_code == 400 and set(r.json()) == {"error", "detail"}, r.text
    assert r.json()["error"] == "bad_parameter" and "heatmap" in r.json()["detail"]
    assert zlib.crc32(png[12:29]) == int.from_bytes(png[29:33], "big")  # IHDR's CRC, as the format says
    cases = {
        "cut.png": png[: len(png) // 2],
        "ihdr.png": _corrupt_chunk(png, b"IHDR"),
        "idat.png": _corrupt_chunk(png, b"IDAT"),
    }
    for name, data in cases.items():
        r = requests.post(f"{limited.url}/v1/predict", params={"name": name}, data=data, timeout=30)
        assert r.status_code == 422 and r.json()["error"] == "unreadable_image", (name, r.text)
        assert name in r.json()["detail"]
    r = requests.post(f"{limited.url}/v1/predict", params={"name": "x.png"}, data=b"just text" * 10, timeout=30)
    assert r.status_code == 415 and r.json()["error"] == "not_an_image"


def test_exif_orientation_is_applied_to_uploads(limited: Limited):
    """Item 8: a camera JPEG marked "rotate 90" is scored upright (its result's size is the upright one)."""
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    im.save(buffer, format="JPEG", exif=exif.tobytes())
    r = requests.post(f"{limited.url}/v1/predict", params={"name": "turned.jpg"}, data=buffer.getvalue(), timeout=30)
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert (result["width"], result["height"]) == (40, 60)


def test_sigterm_drains_requests_on_kept_alive_connections(hazelnut_model: Path, hazelnut_images):
    """Item 9: SIGTERM with a request under way, one half sent on a kept-alive connection and an idle kept-alive
    connection that sends one at once: all three are answered, then closed; new connections are refused, and the
    server exits within the drain timeout."""
    process, url = start_server(hazelnut_model, "--threads", "1", "--drain-timeout", "10")
    try:
        body, headers = multipart([(p.name, p.read_bytes()) for p in hazelnut_images[:3]])
        request = request_bytes("POST", "/v1/predict", body, headers)
        conns = [connect(url) for _ in range(3)]
        for sock in conns:  # each kept alive by a first request
            sock.sendall(request_bytes("GET", "/healthz"))
            assert read_response(sock).status == 200
        conns[0].sendall(request)  # under way when the signal comes
        conns[1].sendall(request[:40])  # half sent
        time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        conns[1].sendall(request[40:])
        conns[2].sendall(request)  # idle when the signal came
        for sock in conns:
            response = read_response(sock, timeout=30)
            assert response.status == 200 and len(response.json()["results"]) == 3
            assert closed_within(sock, 5) is not None  # then closed: the server is going
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/healthz", timeout=2)
        assert process.wait(15) in (0, -signal.SIGTERM)  # uvicorn ends by the signal it drained for
    finally:
        for sock in conns:
            sock.close()
        stop_server(process)


def test_a_low_file_descriptor_limit_does_not_wedge_the_server(hazelnut_model: Path):
    """Item 4: with the server's open-file limit at 256, 300 idle connections: the server recovers (idle ones are
    closed by --header-timeout), /healthz answers again, and the log stays small (repeats rate-limited)."""
    resource = pytest.importorskip("resource")

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    log = tempfile.TemporaryFile("w+")  # noqa: SIM115
    process, url = start_server(hazelnut_model, "--header-timeout", "2", log=log, preexec_fn=low_limit)
    socks: list[socket.socket] = []
    try:
        for _ in range(300):
            socks.append(connect(url, timeout=5))
        time.sleep(1.0)
        deadline, answered = time.monotonic() + 15, False
        while time.monotonic() < deadline and not answered:
            try:
                answered = requests.get(f"{url}/healthz", timeout=2).ok
            except requests.RequestException:
                time.sleep(0.2)
        assert answered, "no answer from /healthz within 15 s"
        log.flush()
        assert log.seek(0, io.SEEK_END) < 100_000
    finally:
        for sock in socks:
            sock.close()
        stop_server(process)
        log.close()
