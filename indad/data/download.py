"""Downloading and unpacking archives so that an interrupted run leaves nothing that looks complete."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from ..errors import DownloadError
from ..progress import Progress, progress_bar


def download_file(url: str, dest: Path, desc: str, progress: Progress = True, chunk: int = 1 << 20) -> None:
    """Stream ``url`` to ``dest`` with a progress bar; ``dest`` only appears once complete."""
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress_bar(desc, total, progress, unit="B", unit_scale=True) as bar:
                while True:
                    block = response.read(chunk)
                    if not block:
                        break
                    out.write(block)
                    bar.update(len(block))
        os.replace(part, dest)
    except Exception as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(f"download of {url} failed: {exc}") from exc


def extract_archive(archive: Path, dest: Path) -> None:
    """Unpack a tar (any compression) or zip archive into ``dest``, refusing paths that leave it."""
    dest = dest.resolve()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    if not (dest / name).resolve().is_relative_to(dest):
                        raise DownloadError(f"archive {archive} has an unsafe path: {name}")
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(dest, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise DownloadError(f"cannot extract {archive}: {exc}") from exc


def fetch_and_build(
    url: str,
    final: Path,
    build: Callable[[Path, Path], None],
    desc: str,
    progress: Progress = True,
) -> Path:
    """Download ``url``, unpack it, let ``build(unpacked, out)`` lay out ``out``, then rename ``out`` to ``final``.

    All work happens in a hidden temporary folder beside ``final``, removed on any
    error, so an interrupted download never leaves a folder that looks complete.
    """
    if final.exists():
        raise DownloadError(f"{final} already exists; not overwritten")
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        archive = work / "download"
        download_file(url, archive, desc, progress)
        unpacked = work / "unpacked"
        unpacked.mkdir()
        extract_archive(archive, unpacked)
        archive.unlink()
        out = work / "dataset"
        build(unpacked, out)
        os.replace(out, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final
