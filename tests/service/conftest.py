"""A real ``indad serve`` on 127.0.0.1 (a subprocess) with a small PatchCore fitted on hazelnut_reduced."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
import requests

from tests.helpers import REPO, free_port

TOKEN = "test-token"
MAX_PIXELS = 1_000_000
MAX_BODY_MB = 2


@dataclass
class Server:
    """A running service: its base URL and the headers that authorise a request."""

    url: str
    headers: dict[str, str]
    process: subprocess.Popen

    def post_images(self, files: list[Path], **params) -> requests.Response:
        """POST /v1/predict with ``files`` as multipart file parts."""
        parts = [("images", (f.name, f.read_bytes(), "application/octet-stream")) for f in files]
        return requests.post(f"{self.url}/v1/predict", files=parts, params=params, headers=self.headers, timeout=60)

    def post_raw(self, data: bytes | Iterator[bytes], **params) -> requests.Response:
        """POST /v1/predict with ``data`` as the raw body (chunked when an iterator)."""
        return requests.post(f"{self.url}/v1/predict", data=data, params=params, headers=self.headers, timeout=60)


def start_server(
    model: Path,
    *options: str,
    timeout: float = 120.0,
    log: IO[str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> tuple[subprocess.Popen, str]:
    """``indad serve MODEL`` in a subprocess on a free 127.0.0.1 port, once it answers /healthz; its output goes to
    ``log`` (a temporary file when None), ``preexec_fn`` runs in the child before it starts (e.g. resource limits)."""
    port = free_port()
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, "-c", "from indad.cli.main import main; main()", "serve", str(model), "--port", str(port)]
    log = log or tempfile.TemporaryFile("w+")  # noqa: SIM115 (open as long as the server runs; read if it fails)
    process = subprocess.Popen(
        [*cmd, *options], cwd=REPO, env=env, stdout=log, stderr=log, text=True, preexec_fn=preexec_fn
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"indad serve exited with {process.returncode}: {log.read()}")
        try:
            if requests.get(f"{url}/healthz", timeout=1).ok:
                return process, url
        except requests.ConnectionError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"indad serve did not answer within {timeout} s")


def stop_server(process: subprocess.Popen) -> None:
    """Stop a server started by :func:`start_server`."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="session")
def hazelnut_model(hazelnut: Path, tmp_path_factory) -> Path:
    """PatchCore at 128 px fitted on hazelnut_reduced (thresholds from 10% held out), saved."""
    from indad.methods import PatchCore

    path = tmp_path_factory.mktemp("serve") / "hazelnut.indad"
    PatchCore(image_size=128, progress=False).fit(hazelnut, holdout=0.1).save(path)
    return path


@pytest.fixture(scope="session")
def hazelnut_images(hazelnut: Path) -> list[Path]:
    """Two test images of each hazelnut_reduced folder (good and defective)."""
    return [p for d in sorted((hazelnut / "test").iterdir()) for p in sorted(d.iterdir())[:2]]


@pytest.fixture(scope="session")
def server(hazelnut_model: Path) -> Iterator[Server]:
    """``indad serve`` with a token, 2 threads and small limits (1 Mpx images, 2 MB bodies)."""
    process, url = start_server(
        hazelnut_model,
        "--threads", "2", "--max-pixels", str(MAX_PIXELS), "--max-body-mb", str(MAX_BODY_MB), "--token", TOKEN,
    )  # fmt: skip
    try:
        yield Server(url, {"Authorization": f"Bearer {TOKEN}"}, process)
    finally:
        stop_server(process)
