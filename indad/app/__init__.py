"""The web app (Streamlit): train on good images, inspect the results, score new images.

``indad app`` or ``streamlit run streamlit_app.py`` starts it; :mod:`indad.app.page`
lays the page out; :mod:`.choices`, :mod:`.inputs`, :mod:`.outcomes` and :mod:`.gallery`
compute what it shows, without Streamlit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

SCRIPT = Path(__file__).with_name("streamlit_app.py")


def app_command(port: int = 8501, headless: bool = False, address: str | None = None) -> list[str]:
    """The ``streamlit run`` command line that serves the app on ``port``."""
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(SCRIPT),
        "--server.port",
        str(int(port)),
        "--server.headless",
        str(bool(headless)).lower(),
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]
    if address:
        cmd += ["--server.address", address]
    return cmd


def serve(
    port: int = 8501, headless: bool = False, address: str | None = None, data_root: str | os.PathLike | None = None
) -> NoReturn:
    """Become the Streamlit server of the app (this process is replaced, so signals reach the server)."""
    env = dict(os.environ)
    if data_root is not None:
        env["INDAD_DATA_DIR"] = str(Path(data_root).resolve())
    cmd = app_command(port, headless, address)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(cmd[0], cmd, env)
