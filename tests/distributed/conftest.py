"""A real local Ray cluster on 127.0.0.1: a head and one worker node, one CPU each."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args: str, env: dict) -> None:
    done = subprocess.run([str(RAY), *args], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"ray {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """The address of a Ray cluster of two processes (head and worker node, ``num_cpus=1`` each), stopped after.

    One cluster at a time on this machine (a file lock): parallel test workers take turns.
    """
    pytest.importorskip("ray")
    lock = open(Path(tempfile_dir()) / "indad-ray-tests.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    temp = Path(tempfile_dir()) / f"indad-ray-{os.getpid()}"  # short: Ray's socket paths have a length limit
    port = _free_port()
    # a throw-away cluster on the loopback: no token authentication (the driver, this process, agrees)
    settings = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE"}
    common = ["--num-cpus=1", "--num-gpus=0", "--object-store-memory=700000000", "--disable-usage-stats"]
    try:
        _ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=false",
             f"--temp-dir={temp}", *common, env=env)
        _ray("start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", *common, env=env)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def tempfile_dir() -> str:
    return "/tmp" if os.path.isdir("/tmp") else os.environ.get("TMPDIR", ".")
