"""Output files written whole or not at all, and CSV text.

Every file or folder indad writes (results, model files, exports, predictions,
pictures, datasets) is written under a hidden partial name beside its target,
``.NAME.PID.RANDOM.part``, and renamed onto the target in one step once complete.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

PARTIAL_SUFFIX = ".part"


def partial_path(path: str | os.PathLike) -> Path:
    """A fresh hidden name beside ``path`` for its content while it is written (``.NAME.PID.RANDOM.part``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")


def _remove(path: Path) -> None:
    """Remove a file or a whole folder, if there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """A partial path beside ``path``, renamed onto it when the block succeeds and removed when it fails.

    Whatever the block writes there (a file or a folder) replaces ``path`` in one
    step: never half-written. An existing folder at ``path`` is replaced whole.
    A process killed inside the block leaves its partial output, which
    :func:`remove_partials` removes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    try:
        yield partial
        if path.is_dir() and not path.is_symlink():
            replaced = partial_path(path)
            os.replace(path, replaced)  # os.replace cannot overwrite a non-empty folder
            os.replace(partial, path)
            _remove(replaced)
        else:
            os.replace(partial, path)
    finally:
        _remove(partial)


def remove_partials(folder: str | os.PathLike) -> None:
    """Remove the partial outputs of writers killed inside :func:`atomic_output`, anywhere under ``folder``."""
    for partial in list(Path(folder).rglob(f".*{PARTIAL_SUFFIX}")):
        _remove(partial)


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all; returns ``path``."""
    with atomic_output(path) as partial, open(partial, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as CSV text (the ``csv`` module's default dialect) under a header line.

    Parameters
    ----------
    rows:
        One mapping per line, from column name to value; a key outside ``columns``
        is an error, a missing one an empty field.
    columns:
        The columns in order; None: the keys of the first row.
    """
    if columns is None:
        columns = list(rows[0]) if rows else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
