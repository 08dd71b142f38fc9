"""``indad app`` serves the page."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest

from indad.app import SCRIPT, app_command
from tests.helpers import REPO, free_port


def test_app_command_runs_the_packaged_script():
    cmd = app_command(8600, headless=True, address="127.0.0.1")
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(SCRIPT) and SCRIPT.is_file()
    assert cmd[cmd.index("--server.port") + 1] == "8600" and cmd[cmd.index("--server.headless") + 1] == "true"
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    assert (REPO / "streamlit_app.py").read_text().split('"""')[-1] == SCRIPT.read_text().split('"""')[-1]


def test_indad_app_serves_until_stopped(tmp_path):
    pytest.importorskip("streamlit")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from indad.cli.main import main; main()",
            "app",
            "--headless",
            "--port",
            str(port),
            "--address",
            "127.0.0.1",
            "--data-root",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        deadline, body = time.monotonic() + 60, b""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                    body = response.read()
                    break
            except OSError:
                time.sleep(0.5)
        assert body == b"ok", proc.stdout.read1(65536) if proc.poll() is not None else "no answer in 60 s"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert response.status == 200 and b"<html" in response.read().lower()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_indad_app_rejects_a_bad_port():
    from click.testing import CliRunner

    from indad.cli.main import cli

    result = CliRunner().invoke(cli, ["app", "--port", "70000"])
    assert result.exit_code == 2 and "70000" in result.output
