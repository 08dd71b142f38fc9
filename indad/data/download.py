"""Downloading and unpacking archives so that an interrupted run leaves nothing that looks complete."""

from __future__ import annotations

import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from ..errors import DownloadError
from ..files import atomic_output
from ..progress import Progress, progress_bar


def download_file(url: str, dest: Path, desc: str, progress: Progress = True, chunk: int = 1 << 20) -> None:
    """Stream ``url`` to ``dest`` with a progress bar; ``dest`` only appears once complete."""
    try:
        with atomic_output(dest) as part, urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress_bar(desc, total, progress, unit="B", unit_scale=True) as bar:
                while True:
                    block = response.read(chunk)
                    if not block:
                        break
                    out.write(block)
                    bar.update(len(block))
    except Exception as exc:
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

    The archive is unpacked in a hidden temporary folder beside ``final`` and
    ``out`` is written by :func:`~indad.files.atomic_output`: both are removed on any
    error, so an interrupted download never leaves a folder that looks complete.
    """
    if final.exists():
        raise DownloadError(f"{final} already exists; not overwritten")
    with atomic_output(final) as out, tempfile.TemporaryDirectory(prefix=f".{final.name}.", dir=final.parent) as work:
        archive = Path(work) / "download"
        download_file(url, archive, desc, progress)
        unpacked = Path(work) / "unpacked"
        unpacked.mkdir()
        extract_archive(archive, unpacked)
        archive.unlink()
        build(unpacked, out)
    return final
