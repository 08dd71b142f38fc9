"""``indad serve DIR`` (a real server on 127.0.0.1): several models, replaced and broken under load; serve's sinks."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import requests

from indad.export.model_file import read_model_info
from tests.line.conftest import Receiver, wait_for
from tests.service.conftest import start_server, stop_server

pytest.importorskip("fastapi")


@pytest.fixture(scope="session")
def other_model(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another small PatchCore (a larger coreset): another version of the line model."""
    from indad.methods import PatchCore

    path = tmp_path_factory.mktemp("other_model") / "parts.indad"
    model = PatchCore(image_size=64, batch_size=4, progress=False, f_coreset=0.5, n_reweight=3)
    model.fit(tiny_root, holdout=0.25).save(path)
    return path


def replace(source: Path | bytes, dest: Path) -> None:
    """Put a file at ``dest`` in one step (written beside it under a hidden name, then renamed)."""
    partial = dest.with_name(f".{dest.name}.part")
    if isinstance(source, bytes):
        partial.write_bytes(source)
    else:
        shutil.copyfile(source, partial)
    os.replace(partial, dest)


def models(url: str) -> dict:
    return requests.get(f"{url}/v1/models", timeout=10).json()


def version_of(url: str, name: str) -> str | None:
    return next((m["version"] for m in models(url)["models"] if m["name"] == name), None)


def test_serve_dir_replaced_under_load_and_broken(
    line_model: Path, other_model: Path, tiny_root: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copyfile(line_model, folder / "a.indad")
    shutil.copyfile(line_model, folder / "b.indad")
    old, new = read_model_info(line_model).version, read_model_info(other_model).version
    assert old != new
    image = sorted((tiny_root / "test" / "good").iterdir())[0]
    data = image.read_bytes()
    process, url = start_server(folder, "--threads", "2")
    try:
        listed = models(url)
        assert [(m["name"], m["version"]) for m in listed["models"]] == [("a", old), ("b", old)]
        reply = requests.post(f"{url}/v1/models/b/predict", data=data, params={"name": "x.png"}, timeout=30)
        assert reply.status_code == 200
        result = reply.json()["results"][0]
        assert (result["model"], result["model_version"], result["name"]) == ("b", old, "x.png")

        # 8 clients call model a while its file is replaced by another version: no request fails.
        answers: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def client() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    r = session.post(f"{url}/v1/models/a/predict", data=data, timeout=60)
                    version = r.json()["results"][0]["model_version"] if r.status_code == 200 else r.text
                    answers.append((r.status_code, version))

        clients = [threading.Thread(target=client) for _ in range(8)]
        for c in clients:
            c.start()
        try:
            wait_for(lambda: len(answers) >= 8, 60, "answers from the first version")
            replace(other_model, folder / "a.indad")
            wait_for(lambda: version_of(url, "a") == new, 60, "the new version of a to be served")
            count = len(answers)
            wait_for(lambda: len(answers) >= count + 8, 60, "answers from the new version")
        finally:
            stop.set()
            for c in clients:
                c.join(60)
        assert {status for status, _ in answers} == {200}, [a for a in answers if a[0] != 200][:3]
        assert {version for _, version in answers} == {old, new}

        # A corrupt file in place of a, and a new corrupt c: a keeps its version, c is not served; both say why.
        replace(b"not a model file", folder / "a.indad")
        replace(b"\x00" * 64, folder / "c.indad")
        wait_for(lambda: set(models(url)["failures"]) == {"a", "c"}, 30, "the failed loads to be listed")
        listed = models(url)
        assert version_of(url, "a") == new and "not an indad model file" in listed["failures"]["a"]["error"]
        reply = requests.post(f"{url}/v1/models/a/predict", data=data, timeout=30)
        assert reply.status_code == 200 and reply.json()["results"][0]["model_version"] == new
        reply = requests.post(f"{url}/v1/models/c/predict", data=data, timeout=30)
        assert reply.status_code == 404 and "c.indad" in reply.json()["detail"]
        metrics = requests.get(f"{url}/metrics", timeout=10).text
        assert 'indad_model_loads_total{model="c",outcome="failed"} 1.0' in metrics

        # A removed file: its model is no longer served.
        (folder / "b.indad").unlink()
        wait_for(lambda: version_of(url, "b") is None, 30, "b to be dropped")
        assert requests.post(f"{url}/v1/models/b/predict", data=data, timeout=30).status_code == 404
    finally:
        stop_server(process)


def test_serve_sends_each_result_to_a_webhook(
    line_model: Path, tiny_root: Path, tmp_path: Path, receiver: Receiver
) -> None:
    image = sorted((tiny_root / "test" / "good").iterdir())[0]
    process, url = start_server(
        line_model, "--webhook", receiver.url, "--webhook-secret", "k", "--outbox", str(tmp_path / "o.sqlite")
    )
    try:
        reply = requests.post(
            f"{url}/v1/predict", data=image.read_bytes(), params={"name": "p.png", "trigger_id": "t-1"}, timeout=30
        )
        assert reply.status_code == 200
        result = reply.json()["results"][0]
        wait_for(lambda: len(receiver.received) == 1, 30, "the webhook to get the result")
        delivered = f'indad_outbox_delivered_total{{sink="webhook:{receiver.url}"}} 1.0'
        wait_for(lambda: delivered in requests.get(f"{url}/metrics", timeout=10).text, 10, "the delivery counted")
        metrics = requests.get(f"{url}/metrics", timeout=10).text
        assert f'indad_outbox_backlog{{sink="webhook:{receiver.url}"}} 0.0' in metrics
    finally:
        stop_server(process)
    sent = json.loads(receiver.received[0][1])
    assert sent["id"] == result["id"] and sent["trigger_id"] == "t-1" and sent["source"] == "p.png"
    assert sent["score"] == pytest.approx(result["score"]) and sent["model"] == "parts"
    assert sent["decision"] == result["decision"] and sent["regions"] == result["regions"]
    assert "X-Indad-Signature" in receiver.received[0][0]


def test_serve_with_a_source_scores_a_frame_per_trigger(
    line_model: Path, tiny_root: Path, tmp_path: Path, receiver: Receiver
) -> None:
    from tests.line.conftest import MjpegServer, frames_of, jpeg

    stream = MjpegServer([[jpeg(f) for f in frames_of(tiny_root, 400)]], fps=20)
    stream.start()
    out = tmp_path / "frames"
    process, url = start_server(
        line_model, "--source", stream.url, "--stream-out", str(out), "--webhook", receiver.url,
        "--outbox", str(tmp_path / "o.sqlite"),
    )  # fmt: skip
    try:
        wait_for(lambda: requests.get(f"{url}/v1/stream", timeout=5).json()["source"]["frames"] > 2, 30, "frames")
        reply = requests.post(f"{url}/v1/trigger", json={"id": "plc-7"}, timeout=10)
        assert reply.status_code == 202 and reply.json() == {"trigger_id": "plc-7"}
        wait_for(lambda: len(receiver.received) == 1, 30, "the triggered frame's result")
        stats = requests.get(f"{url}/v1/stream", timeout=5).json()
    finally:
        stop_server(process)
        stream.stop()
    sent = receiver.bodies()[0]
    assert sent["trigger_id"] == "plc-7" and sent["source"].startswith(stream.url) and sent["score"] is not None
    assert stats["scored"] == 1 and stats["triggers"] == 1
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == [sent["id"]]
