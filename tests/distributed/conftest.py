"""A real local Ray cluster on 127.0.0.1: a head and one worker node, one CPU each, shared by the test processes."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port

RAY = Path(sys.executable).with_name("ray")
STATE = Path(tempfile.gettempdir()) / "indad-ray-tests"  # short: Ray's socket paths have a length limit
SETTINGS = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}  # a throw-away loopback cluster


def _ray(*args: str, check: bool = True) -> None:
    env = os.environ | SETTINGS | {"OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run([str(RAY), *args], env=env, capture_output=True, text=True, timeout=180)
    assert not check or done.returncode == 0, f"ray {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _shared_state() -> Iterator[dict]:
    """The cluster's address and the test processes using it, read and written under a file lock."""
    STATE.mkdir(exist_ok=True)
    with open(STATE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = STATE / "state.json"
        state = json.loads(path.read_text()) if path.exists() else {"address": None, "users": []}
        state["users"] = [pid for pid in state["users"] if _alive(pid)]  # a crashed run's entries
        yield state
        path.write_text(json.dumps(state))


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The address of a Ray cluster of two processes (head and worker node, ``num_cpus=1`` each).

    The first test process that needs it starts it, the last one done stops it (``ray stop``); parallel test
    processes use it at once, none waits for another's tests.
    """
    pytest.importorskip("ray")
    saved = {k: os.environ.get(k) for k in SETTINGS}
    os.environ.update(SETTINGS)  # this process is a driver of that cluster
    with _shared_state() as state:
        if not state["users"]:
            _ray("stop", "--force", check=False)  # whatever a crashed run left
            shutil.rmtree(STATE / "ray", ignore_errors=True)
            port = free_port()
            common = [
                "--node-ip-address=127.0.0.1",
                "--num-cpus=1",
                "--num-gpus=0",
                "--object-store-memory=700000000",
                "--disable-usage-stats",
            ]
            _ray(
                "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={STATE / 'ray'}", *common
            )
            _ray("start", f"--address=127.0.0.1:{port}", *common)
            state["address"] = f"127.0.0.1:{port}"
        state["users"].append(os.getpid())
        address = state["address"]
    try:
        yield address
    finally:
        with _shared_state() as state:
            state["users"] = [pid for pid in state["users"] if pid != os.getpid()]
            if not state["users"]:
                _ray("stop", "--force", check=False)
                shutil.rmtree(STATE / "ray", ignore_errors=True)
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
