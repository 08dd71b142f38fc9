"""The real service on 127.0.0.1, through a real HTTP client."""

import base64
import csv
import io
import json
import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from indad.inference import open_scorer, predict_folder
from tests.service.conftest import MAX_PIXELS, Server


@pytest.fixture(scope="session")
def reference(hazelnut_model: Path, hazelnut_images: list[Path], tmp_path_factory) -> dict[str, dict]:
    """What ``indad predict`` writes for the test images: each image's CSV row and JSONL regions, by file path."""
    out = tmp_path_factory.mktemp("predict") / "out"
    predict_folder(open_scorer(hazelnut_model), hazelnut_images, out, progress=False)
    rows = {r["path"]: r for r in csv.DictReader((out / "predictions.csv").open())}
    for line in (out / "predictions.jsonl").read_text().splitlines():
        record = json.loads(line)
        rows[record["path"]]["regions_json"] = record["regions"]
    return rows


def assert_same_as_predict(result: dict, row: dict) -> None:
    """A service result equals ``indad predict``'s row for the same image (its CSV rounds to 6 digits)."""
    assert result["score"] == pytest.approx(float(row["score"]), rel=2e-5)
    assert result["normalized_score"] == pytest.approx(float(row["normalized_score"]), rel=2e-5)
    assert result["decision"] == row["decision"]
    assert len(result["regions"]) == int(row["regions"])
    for got, want in zip(result["regions"], row["regions_json"], strict=True):
        assert got["bbox"] == want["bbox"] and abs(got["area"] - want["area"]) <= max(2, want["area"] // 100)


def test_health_is_open_everything_else_needs_the_token(server: Server):
    assert requests.get(f"{server.url}/healthz", timeout=10).json() == {"status": "ok"}
    for path in ("/v1/model", "/metrics", "/openapi.json"):
        r = requests.get(f"{server.url}{path}", timeout=10)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized", path
        wrong = requests.get(f"{server.url}{path}", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401, path
    assert requests.post(f"{server.url}/v1/predict", data=b"x", timeout=10).status_code == 401
    spec = requests.get(f"{server.url}/openapi.json", headers=server.headers, timeout=10).json()
    assert {"/v1/predict", "/v1/model", "/healthz", "/metrics"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert requests.get(f"{server.url}/docs", headers=server.headers, timeout=10).ok


def test_model_header(server: Server, hazelnut_model: Path):
    from indad.methods import load_model

    model = load_model(hazelnut_model)
    got = requests.get(f"{server.url}/v1/model", headers=server.headers, timeout=10).json()
    assert got["method"] == "patchcore" and got["backbone"]["name"] == model.backbone_name
    assert got["backbone"]["fingerprint"] == model.backbone.fingerprint
    assert got["thresholds"] == model.thresholds.to_dict() and got["indad_version"] and got["server_version"]
    assert "state" not in got


def test_scores_equal_indad_predict(server: Server, hazelnut_images: list[Path], reference: dict):
    r = server.post_images(hazelnut_images)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["name"] for x in results] == [p.name for p in hazelnut_images]
    for path, result in zip(hazelnut_images, results, strict=True):
        assert (result["width"], result["height"]) == Image.open(path).size
        assert_same_as_predict(result, reference[str(path)])
    assert {x["decision"] for x in results} == {"good", "defective"}
    # One image as the raw body, named by ?name=, with its heatmap at the original size.
    path = hazelnut_images[-1]
    one = server.post_raw(path.read_bytes(), name="part.png", heatmap="true").json()["results"]
    assert len(one) == 1 and one[0]["name"] == "part.png"
    assert_same_as_predict(one[0], reference[str(path)])
    heat = Image.open(io.BytesIO(base64.b64decode(one[0]["heatmap_png"])))
    assert heat.format == "PNG" and heat.size == Image.open(path).size and heat.mode == "RGB"
    assert results[0]["heatmap_png"] is None  # only on request


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (128, 64, 32)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_input_gets_a_json_error_naming_it_and_the_server_keeps_serving(server: Server, hazelnut_images):
    good = hazelnut_images[0].read_bytes()
    side = int(MAX_PIXELS**0.5) + 10  # a few kB of PNG that decodes to more than MAX_PIXELS pixels
    cases = {
        "not_an_image": (415, b"this is not an image"),
        "empty_image": (400, b""),
        "unreadable_image": (422, good[: len(good) // 3]),
        "too_many_pixels": (413, _png((side, side))),
    }
    for kind, (status, data) in cases.items():
        r = server.post_raw(data, name=f"{kind}.png")
        assert r.status_code == status and r.json()["error"] == kind, (kind, r.text)
        assert f"{kind}.png" in r.json()["detail"]
    # In a multipart request, one bad image refuses the request, named.
    parts = [("images", ("fine.png", good)), ("images", ("broken.png", good[: len(good) // 2]))]
    r = requests.post(f"{server.url}/v1/predict", files=parts, headers=server.headers, timeout=30)
    assert r.status_code == 422 and "broken.png" in r.json()["detail"]
    r = requests.post(f"{server.url}/v1/predict", files={"note": (None, "text")}, headers=server.headers, timeout=30)
    assert r.status_code == 400 and r.json()["error"] == "no_images"
    # A body over the limit is refused from its declared length.
    r = server.post_raw(os.urandom(3 * 2**20))
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    # ...and a chunked body of no declared length as soon as it has passed the limit.
    r = server.post_raw(iter([os.urandom(2**20) for _ in range(3)]))
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    assert server.process.poll() is None
    assert server.post_images(hazelnut_images[:1]).status_code == 200


def test_metrics_count_requests_images_batches_and_errors(server: Server, hazelnut_images):
    server.post_images(hazelnut_images[:2])
    server.post_raw(b"")
    text = requests.get(f"{server.url}/metrics", headers=server.headers, timeout=10).text
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["indad_images_scored_total"] >= 2
    assert values['indad_requests_total{route="/v1/predict",status="200"}'] >= 1
    assert values['indad_errors_total{kind="empty_image"}'] >= 1
    assert values['indad_request_seconds_count{route="/v1/predict"}'] >= 2
    assert values["indad_batch_size_count"] >= 1


def run_load(server: Server, images: list[Path], clients: int, per_client: int, budget_s: float) -> dict:
    """``clients`` threads each sending ``per_client`` one-image requests (cycling over ``images``), within
    ``budget_s`` seconds: latencies, failures and every answer's result by image path."""
    payloads = [(p, p.read_bytes()) for p in images]
    latencies: list[float] = []
    failures: list[str] = []
    answers: list[tuple[Path, dict]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + budget_s

    def client(c: int) -> None:
        with requests.Session() as session:
            for i in range(per_client):
                if time.monotonic() > deadline:
                    with lock:
                        failures.append(f"client {c}: out of time after {i} requests")
                    return
                path, data = payloads[(c * per_client + i) % len(payloads)]
                start = time.perf_counter()
                try:
                    r = session.post(
                        f"{server.url}/v1/predict", data=data, params={"name": path.name},
                        headers=server.headers, timeout=60,
                    )  # fmt: skip
                except requests.RequestException as exc:
                    with lock:
                        failures.append(f"client {c}: {exc}")
                    continue
                elapsed = time.perf_counter() - start
                with lock:
                    if r.status_code == 200:
                        latencies.append(elapsed)
                        answers.append((path, r.json()["results"][0]))
                    else:
                        failures.append(f"client {c}: {r.status_code} {r.text}")

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(budget_s + 60)
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "answered": len(latencies),
        "failures": failures,
        "answers": answers,
        "images_per_s": len(latencies) / wall,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
    }


def check_load(server: Server, images, reference, clients: int, per_client: int, budget_s: float) -> None:
    """Every request of a bounded load answered, with ``indad predict``'s scores; figures printed."""
    result = run_load(server, images, clients, per_client, budget_s)
    assert not result["failures"], result["failures"][:5]
    assert result["answered"] == clients * per_client
    for path, answer in result["answers"]:
        assert_same_as_predict(answer, reference[str(path)])
    print(
        f"\n{clients} clients x {per_client} requests: {result['images_per_s']:.1f} images/s, "
        f"p50 {1000 * result['p50']:.0f} ms, p99 {1000 * result['p99']:.0f} ms"
    )


def test_4_clients_x_10_requests_get_the_reference_scores(server: Server, hazelnut_images, reference):
    check_load(server, hazelnut_images, reference, clients=4, per_client=10, budget_s=120)


@pytest.mark.slow
def test_load_8_clients_x_200_requests(server: Server, hazelnut_images, reference):
    check_load(server, hazelnut_images, reference, clients=8, per_client=200, budget_s=900)


def test_scores_do_not_depend_on_the_batch(server: Server, hazelnut_images, reference):
    """The same image alone and among others (batched with them on the server) gets the same score."""
    alone = [server.post_images([p]).json()["results"][0]["score"] for p in hazelnut_images[:3]]
    together = [x["score"] for x in server.post_images(hazelnut_images[:3]).json()["results"]]
    np.testing.assert_allclose(alone, together, rtol=2e-5)


def test_serve_refuses_a_missing_model_with_one_message(tmp_path):
    from click.testing import CliRunner

    from indad.cli.main import cli

    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "missing.indad"), "--port", "0"])
    assert result.exit_code == 1 and "no such model file" in result.output and "Traceback" not in result.output


def test_a_full_queue_answers_busy_and_the_server_recovers(hazelnut_model: Path, hazelnut_images: list[Path]):
    """With at most 2 images waiting, concurrent 2-image requests are partly refused (503 busy), none is lost."""
    from tests.service.conftest import start_server, stop_server

    process, url = start_server(hazelnut_model, "--threads", "1", "--max-queue", "2", "--max-batch", "1")
    statuses: list[int] = []
    lock = threading.Lock()
    parts = [("images", (p.name, p.read_bytes())) for p in hazelnut_images[:2]]

    def client() -> None:
        for _ in range(3):
            status = requests.post(f"{url}/v1/predict", files=parts, timeout=60).status_code
            with lock:
                statuses.append(status)

    try:
        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(statuses) == 24 and set(statuses) == {200, 503}, statuses
        assert requests.post(f"{url}/v1/predict", files=parts, timeout=60).status_code == 200
    finally:
        stop_server(process)


def test_a_tiled_model_with_a_region_of_interest_judged_by_regions(hazelnut: Path, hazelnut_images, tmp_path):
    """Tiles and the region of interest travel in the model file; --decision regions --min-area judge by regions."""
    from indad.inference import TorchScorer, map_to_original
    from indad.methods import PatchCore
    from indad.regions import find_regions
    from tests.service.conftest import start_server, stop_server

    roi = {"polygons": [[[0, 0], [256, 0], [256, 180], [0, 180]]], "size": [256, 256]}  # the bottom cut off
    model = PatchCore(image_size=128, tile={"size": 64, "overlap": 16}, roi=roi, progress=False)
    path = model.fit(hazelnut, holdout=0.2).save(tmp_path / "tiled.indad")
    scorer, min_area = TorchScorer(model), 200
    process, url = start_server(path, "--threads", "2", "--decision", "regions", "--min-area", str(min_area))
    try:
        parts = [("images", (p.name, p.read_bytes())) for p in hazelnut_images]
        results = requests.post(f"{url}/v1/predict", files=parts, timeout=120).json()["results"]
    finally:
        stop_server(process)
    t = model.thresholds
    for image_path, result in zip(hazelnut_images, results, strict=True):
        image = Image.open(image_path).convert("RGB")
        scores, maps = scorer(model.preprocess.image(image)[None])
        assert result["score"] == pytest.approx(float(scores[0]), rel=1e-4)
        full = map_to_original(maps[0], model.preprocess, image.size)
        assert (full[182:] == 0).all()  # below the region of interest nothing scores
        regions = find_regions(full, t.pixel, min_area)
        assert [r["area"] for r in result["regions"]] == [r.area for r in regions]
        assert result["decision"] == ("defective" if regions else "good")
    assert {r["decision"] for r in results} == {"good", "defective"}
