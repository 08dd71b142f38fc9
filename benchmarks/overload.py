"""``indad serve`` under a burst of clients: fast 503s, bounded memory, recovery (issue 23).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/overload.py [--data-root ../shared/datasets] [--clients 200]
        [--images 8] [--rounds 2] [--threads 2] [--image-size 128] [--model M.indad] [--unbounded]
        [-- SERVE OPTIONS...]

PatchCore (offline defaults but ``--image-size``) is fitted on hazelnut_reduced
(or ``--model`` is served). ``indad serve`` runs in a subprocess on 127.0.0.1
with its default limits (plus any options after ``--``). ``--clients`` threads
start together and each sends ``--rounds`` requests of ``--images`` images
(256 x 256 PNG), one after the other. Printed (JSON): answers by status,
latency of the 200s and of the 503s, the server's resident memory before, at its
peak (``VmHWM``) and after, what a careful client sees meanwhile (one request at
a time with ``Expect: 100-continue``, so that a refusal comes before its body is
sent; the clients of the burst, like ``requests``, send their whole body first),
and the recovery: a request and ``/healthz`` after the burst, and the images
still waiting (``indad_images_waiting``). With ``--unbounded``, the same burst
(one round) against a server whose limits are out of reach, as admission was
before issue 23, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests
from urllib3 import encode_multipart_formdata

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service import start_server  # benchmarks/service.py, beside this file


def memory_mb(pid: int) -> dict[str, float]:
    """A process's resident memory now (``VmRSS``) and at its peak (``VmHWM``), MiB (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def quantiles(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of latencies (s), in ms."""
    if not values:
        return {}
    values = sorted(values)
    return {
        "p50_ms": round(1000 * statistics.median(values), 1),
        "p99_ms": round(1000 * values[min(len(values) - 1, int(0.99 * len(values)))], 1),
        "max_ms": round(1000 * values[-1], 1),
    }


def careful_request(url: str, body: bytes, content_type: str) -> tuple[int, float]:
    """One request sent as a careful client does (``Expect: 100-continue``: the body only once the server asks for
    it): its status and the seconds to it."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    t0 = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=300) as sock:
        sock.sendall(head)
        reply = sock.recv(65536)
        if reply.startswith(b"HTTP/1.1 100"):
            sock.sendall(body)
            reply = reply.partition(b"\r\n\r\n")[2] or sock.recv(65536)
        return int(reply.split(b" ", 2)[1]), time.perf_counter() - t0


def burst(url: str, files: list[tuple[str, bytes]], clients: int, rounds: int) -> dict:
    """``clients`` threads starting together, each sending ``rounds`` requests of ``files``: statuses and latencies."""
    body, content_type = encode_multipart_formdata([("images", (name, data)) for name, data in files])
    headers = {"Content-Type": content_type}  # encoded once: the clients' own work is not what is measured
    answers: list[tuple[int | str, float, int]] = []
    lock, start = threading.Lock(), threading.Barrier(clients)

    def client() -> None:
        start.wait()
        with requests.Session() as session:
            for round_ in range(rounds):
                t0 = time.perf_counter()
                try:
                    r = session.post(f"{url}/v1/predict", data=body, headers=headers, timeout=300)
                    status: int | str = r.status_code
                except requests.RequestException as exc:
                    status = type(exc).__name__
                with lock:
                    answers.append((status, time.perf_counter() - t0, round_))

    careful: list[tuple[int, float]] = []

    def probe() -> None:  # a careful client sending now and then during the burst
        while any(t.is_alive() for t in threads):
            careful.append(careful_request(url, body, content_type))
            time.sleep(0.2)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    prober = threading.Thread(target=probe)
    prober.start()
    for t in threads:
        t.join(600)
    prober.join(600)
    return {
        "wall_s": round(time.perf_counter() - t0, 2),
        "statuses": dict(Counter(str(s) for s, _, _ in answers)),
        "ok": quantiles([t for s, t, _ in answers if s == 200]),
        "busy": quantiles([t for s, t, _ in answers if s == 503]),
        "busy_by_round": [quantiles([t for s, t, r in answers if s == 503 and r == i]) for i in range(rounds)],
        "careful_client": {
            "statuses": dict(Counter(str(s) for s, _ in careful)),
            "busy": quantiles([t for s, t in careful if s == 503]),
            "ok": quantiles([t for s, t in careful if s == 200]),
        },
    }


def waiting(url: str) -> float:
    """The server's ``indad_images_waiting`` gauge."""
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("indad_images_waiting "):
            return float(line.split()[1])
    raise RuntimeError("no indad_images_waiting in /metrics")


# Limits raised out of reach: admission as before issue 23 (everything accepted), for comparison.
UNBOUNDED = ["--max-queue", "1000000", "--max-queue-pixels", str(10**13), "--max-queue-mb", "1000000",
             "--max-connections", "100000", "--body-timeout", "3600"]  # fmt: skip


def measure(model: Path, options: list[str], files: list[tuple[str, bytes]], clients: int, rounds: int) -> dict:
    """One server with ``options``: the burst, its memory before / at peak / after, and the recovery."""
    process, url = start_server(model, options)
    try:
        requests.post(f"{url}/v1/predict", files=[("images", f) for f in files], timeout=120)  # warm-up
        report: dict = {"serve_options": options, "rss_before_mb": round(memory_mb(process.pid)["VmRSS"], 1)}
        report["burst"] = burst(url, files, clients, rounds)
        mem = memory_mb(process.pid)
        report["rss_peak_mb"], report["rss_after_mb"] = round(mem["VmHWM"], 1), round(mem["VmRSS"], 1)
        t0 = time.perf_counter()
        status = requests.post(f"{url}/v1/predict", files=[("images", f) for f in files], timeout=600).status_code
        report["after"] = {"status": status, "latency_ms": round(1000 * (time.perf_counter() - t0), 1)}
        t0 = time.perf_counter()
        requests.get(f"{url}/healthz", timeout=10).raise_for_status()
        report["after"] |= {"healthz_ms": round(1000 * (time.perf_counter() - t0), 1), "waiting": waiting(url)}
    finally:
        process.terminate()
        process.wait(60)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))
    parser.add_argument("--model", default=None, help="A model file to serve (default: fit one).")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--images", type=int, default=8, help="Images per request.")
    parser.add_argument("--rounds", type=int, default=2, help="Requests per client, one after the other.")
    parser.add_argument(
        "--unbounded", action="store_true", help="Also run one round with the limits out of reach, for comparison."
    )
    parser.add_argument("serve_options", nargs="*", help="More `indad serve` options (after --).")
    args = parser.parse_args()

    root = Path(args.data_root) / "hazelnut_reduced"
    images = sorted(p for d in sorted((root / "test").iterdir()) for p in sorted(d.iterdir()))[: args.images]
    files = [(p.name, p.read_bytes()) for p in images]
    report: dict = {"clients": args.clients, "images_per_request": args.images, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else None
        if model is None:
            from indad.methods import PatchCore

            fitted = PatchCore(image_size=args.image_size, progress=False).fit(root, holdout=0.1)
            model = fitted.save(Path(tmp) / "m.indad")
        options = ["--threads", str(args.threads), *args.serve_options]
        report["limited"] = measure(model, options, files, args.clients, args.rounds) | {"rounds": args.rounds}
        if args.unbounded:
            report["unbounded"] = measure(model, [*options, *UNBOUNDED], files, args.clients, 1) | {"rounds": 1}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
