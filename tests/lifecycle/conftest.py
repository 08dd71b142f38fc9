"""A small fitted model on tiny images, and a real PostgreSQL server on 127.0.0.1 for the record."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import free_port, make_layout, save_image


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A tiny MVTec-AD-layout dataset of random 64 px images (10 training images)."""
    return make_layout(tmp_path_factory.mktemp("life") / "ds", n_train=10, size=(64, 64))


@pytest.fixture(scope="session")
def tiny_model_file(tiny_dataset: Path, tmp_path_factory) -> Path:
    """PatchCore at 64 px fitted on :func:`tiny_dataset` (thresholds from 3 held-out images), saved."""
    from indad.methods import PatchCore

    path = tmp_path_factory.mktemp("models") / "model.indad"
    PatchCore(image_size=64, batch_size=8, progress=False, f_coreset=0.25, n_reweight=3).fit(
        tiny_dataset, holdout=0.3
    ).save(path)
    return path


def brightened(source: Path, dest: Path, factor: float) -> list[Path]:
    """Copies of the images of ``source`` with their pixel values times ``factor``."""
    from PIL import Image

    out = []
    for p in sorted(source.iterdir()):
        arr = np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) * factor
        out.append(save_image(dest / p.name, np.clip(arr, 0, 255).astype(np.uint8)))
    return out


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
    return Path(found[-1]).parent if found[-1] else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of a fresh cluster on 127.0.0.1 and a free port (run as the postgres user when root)."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'indad[record]')")
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql): the record's server test is skipped")
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("PostgreSQL refuses to run as root and runuser is missing")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="indad-pg-"))
    data = root / "data"
    if as_user:
        shutil.chown(root, "postgres")
    port = free_port()
    env = os.environ | {"LC_ALL": "C"}
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "indad", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, env=env)  # fmt: skip
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
                    "-w", "-t", "60", "start"], check=True, capture_output=True, env=env)  # fmt: skip
    try:
        import psycopg

        url = f"postgresql://indad@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(url).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"postgresql+psycopg://indad@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, env=env)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
