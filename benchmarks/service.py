"""Throughput and latency of ``indad serve`` under concurrent clients, against ``indad predict`` on the same images.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/service.py [--data-root ../shared/datasets]
        [--image-size 128] [--threads 2] [--clients 1,4,8] [--requests 200] [--max-batch 16] [--max-wait-ms 5]

PatchCore (default offline config but ``--image-size``) is fitted on
hazelnut_reduced and saved. Its 60 images (test and train, 256 x 256 PNG) are
scored. Folder scoring: ``predict_folder`` (batch 16, with its pictures and CSV), and the same images scored in
batches without writing anything (decode, preprocess, score, regions). Service:
``indad serve`` in a subprocess on 127.0.0.1 (``--threads`` torch threads), then
for each client count, that many client threads each send ``--requests``
one-image requests (raw bytes) in turn; every request must be answered (200).
The clients run on the same machine and share its cores with the server.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, options: list[str], timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """``indad serve`` on a free 127.0.0.1 port, once it answers /healthz."""
    port = free_port()
    cmd = [sys.executable, "-c", "from indad.cli.main import main; main()", "serve", str(model), "--port", str(port)]
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE"}
    process = subprocess.Popen([*cmd, *options], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{url}/healthz", timeout=1).ok:
                return process, url
        except requests.ConnectionError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("indad serve did not start")


def load(url: str, payloads: list[tuple[str, bytes]], clients: int, per_client: int, budget_s: float) -> dict:
    """``clients`` threads each sending ``per_client`` one-image requests within ``budget_s``: images/s, p50, p99."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + budget_s

    def client(c: int) -> None:
        with requests.Session() as session:
            for i in range(per_client):
                if time.monotonic() > deadline:
                    return
                name, data = payloads[(c * per_client + i) % len(payloads)]
                start = time.perf_counter()
                try:
                    r = session.post(f"{url}/v1/predict", data=data, params={"name": name}, timeout=60)
                    ok = r.status_code == 200
                except requests.RequestException:
                    ok = False
                with lock:
                    (latencies.append(time.perf_counter() - start) if ok else failures.append(name))

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(budget_s + 60)
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "clients": clients,
        "requests": clients * per_client,
        "answered": len(latencies),
        "failed": len(failures),
        "images_per_s": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def folder_figures(model: Path, images: list[Path], work: Path) -> dict:
    """``predict_folder`` images/s (pictures and CSV written), and decode + score + regions alone (nothing written)."""
    import torch

    from indad.data import read_image
    from indad.inference import map_to_original, open_scorer, predict_folder
    from indad.regions import find_regions

    scorer = open_scorer(model, "torch", "cpu")
    predict_folder(scorer, images[:16], work / "warm", progress=False)
    start = time.perf_counter()
    predict_folder(scorer, images, work / "out", batch_size=16, progress=False)
    folder = len(images) / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(0, len(images), 16):
        originals = [read_image(p) for p in images[i : i + 16]]
        _, maps = scorer(torch.stack([scorer.preprocess.image(im) for im in originals]))
        for im, amap in zip(originals, maps, strict=True):
            find_regions(map_to_original(amap, scorer.preprocess, im.size), scorer.thresholds.pixel)
    return {
        "predict_folder_images_per_s": folder,
        "score_only_images_per_s": len(images) / (time.perf_counter() - start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--requests", type=int, default=200, help="Requests per client.")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--budget-s", type=float, default=600.0, help="Time limit of each load run.")
    args = parser.parse_args()

    import torch

    from indad.methods import PatchCore

    torch.set_num_threads(args.threads)
    root = Path(args.data_root) / "hazelnut_reduced"
    images = sorted(p for d in (*(root / "test").iterdir(), root / "train" / "good") for p in d.iterdir())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = PatchCore(image_size=args.image_size, progress=False).fit(root, holdout=0.1).save(work / "m.indad")
        report: dict = {"images": len(images), "image_size": args.image_size, "threads": args.threads}
        report |= folder_figures(model, images, work)
        options = ["--threads", str(args.threads), "--max-batch", str(args.max_batch)]
        process, url = start_server(model, [*options, "--max-wait-ms", str(args.max_wait_ms)])
        try:
            payloads = [(p.name, p.read_bytes()) for p in images]
            load(url, payloads, 2, 8, 60)  # warm-up
            report["service"] = [
                load(url, payloads, int(c), args.requests, args.budget_s) for c in args.clients.split(",")
            ]
        finally:
            process.terminate()
            process.wait(30)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
