"""A hot folder: score each new image of a folder once, as it arrives, and append its result.

``OUT/predictions.jsonl`` is the ledger: a line per scored file (the fields of
``indad predict``'s JSONL, its CSV row, and a ``key``: its path relative to the
input folder, size and modification time), appended and synced before the file
is moved. A restart reads it back: a file
recorded there is not scored again (a move left undone is finished), a file
not recorded is scored, so nothing is scored twice or skipped.
``OUT/predictions.csv`` is rebuilt from the ledger on start and appended to after.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.images import list_images
from ..errors import InputError
from ..files import csv_text, remove_partials, write_atomic
from ..thresholds import Decision
from .folder import CSV_COLUMNS, Scorer, read_input, report_error, score_inputs

LEDGER = "predictions.jsonl"
TABLE = "predictions.csv"
# Where --move puts a scored file, by its decision (an unreadable file: error).
MOVE_FOLDERS = {"good": "ok", "defective": "ng", "": "error"}


def file_key(rel: Path, stat: os.stat_result) -> str:
    """What identifies an arrived file: its path in the input folder, size and modification time."""
    return f"{rel.as_posix()}|{stat.st_size}|{stat.st_mtime_ns}"


def _append(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` and sync it to disk."""
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """The records of a ledger; a last line cut short by a crash is dropped (and cut from the file)."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    complete, _, torn = text.rpartition("\n")
    if torn:
        write_atomic(path, complete + "\n" if complete else "")
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def csv_rows_text(records: list[dict[str, Any]]) -> str:
    """The CSV lines (no header) of ledger records."""
    text = csv_text([{c: r["row"][c] for c in CSV_COLUMNS} for r in records], CSV_COLUMNS)
    return text.partition("\r\n")[2]


def unique_destination(path: Path, taken: set[Path]) -> Path:
    """``path``, or ``NAME.N.SUFFIX`` for the first N making it neither an existing file nor in ``taken``."""
    candidate, n = path, 1
    while candidate.exists() or candidate in taken:
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
        n += 1
    return candidate


@dataclass
class HotFolder:
    """Scores the images arriving in ``in_dir`` once each; results and pictures in ``out_dir``.

    A file is scored once it is complete: unchanged in size and modification
    time for ``settle_s`` seconds (hidden files, such as a writer's partial
    ``.name.part``, are never taken: writing under a hidden name and renaming is
    the surest hand-over). With ``move``, a scored file is moved to
    ``out_dir/ok``, ``ng`` or ``error`` (unreadable), keeping its relative path.
    """

    scorer: Scorer
    in_dir: Path
    out_dir: Path
    move: bool = False
    settle_s: float = 1.0
    batch_size: int = 16
    decision: Decision = field(default_factory=Decision)
    clock: Callable[[], float] = time.monotonic
    on_rows: Callable[[list[dict]], Any] | None = None  # each batch's result rows, before any move (the record)
    _done: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)  # file key -> its ledger record
    _seen: dict[Path, tuple[str, float]] = field(default_factory=dict, init=False)  # file -> (key, first seen)

    def __post_init__(self) -> None:
        self.in_dir, self.out_dir = Path(self.in_dir), Path(self.out_dir)
        if not self.in_dir.is_dir():
            raise InputError(f"no such input folder: {self.in_dir}")
        if self.move and self.scorer.thresholds is None:
            raise InputError("the model has no thresholds, so no decisions to move files by (see `indad calibrate`)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        remove_partials(self.out_dir)
        records = read_ledger(self.out_dir / LEDGER)
        header = csv_text([], CSV_COLUMNS)
        write_atomic(self.out_dir / TABLE, header + csv_rows_text(records))
        self._done = {r["key"]: r for r in records}

    def ready(self) -> list[Path]:
        """The input files complete and not yet scored (finishing the moves a restart left undone), by path."""
        now, ready, current = self.clock(), [], {}
        skip = self.out_dir.resolve()
        for path in list_images(self.in_dir, recursive=True):
            if skip == path.resolve() or skip in path.resolve().parents:
                continue
            try:
                key = file_key(path.relative_to(self.in_dir), path.stat())
            except FileNotFoundError:  # gone between the listing and now
                continue
            if key in self._done:
                if self.move:  # scored before a crash, or by a run without --move
                    record = self._done[key]
                    self._move(path, Path(record.get("moved_to") or self._destination(path, record["row"], set())))
                continue
            seen_key, since = self._seen.get(path, (key, now))
            since = since if seen_key == key else now
            current[path] = (key, since)
            if now - since >= self.settle_s:
                ready.append(path)
        self._seen = current
        return ready

    def score(self, files: list[Path]) -> list[dict]:
        """Score ``files`` (batches of ``batch_size``), record each in the ledger and CSV, move it if asked."""
        rows = []
        for start in range(0, len(files), self.batch_size):
            batch = files[start : start + self.batch_size]
            keys = [self._seen[p][0] for p in batch]
            items = [read_input(p, self.scorer.preprocess) for p in batch]
            scored = score_inputs(self.scorer, batch, items, self.in_dir.absolute(), self.out_dir, self.decision)
            if self.on_rows is not None:
                self.on_rows(scored)
            records: list[dict[str, Any]] = []
            taken: set[Path] = set()
            for path, key, row in zip(batch, keys, scored, strict=True):
                record: dict[str, Any] = {
                    "path": row["path"],
                    "score": float(row["score"]) if row["score"] else None,
                    "decision": row["decision"],
                    "error": row["error"],
                    "regions": json.loads(row["regions_json"]) if row["regions_json"] else None,
                    "key": key,
                    "row": {c: row[c] for c in CSV_COLUMNS},
                }
                if self.move:
                    record["moved_to"] = str(self._destination(path, row, taken))
                    taken.add(Path(record["moved_to"]))
                records.append(record)
                if row["error"]:
                    report_error(row)
            _append(self.out_dir / LEDGER, "".join(json.dumps(r) + "\n" for r in records))
            _append(self.out_dir / TABLE, csv_rows_text(records))
            for path, record in zip(batch, records, strict=True):
                self._done[record["key"]] = record
                self._seen.pop(path, None)
                if self.move:
                    self._move(path, Path(record["moved_to"]))
            rows += scored
        return rows

    def _destination(self, path: Path, row: dict, taken: set[Path]) -> Path:
        """Where ``--move`` puts a scored file: ``OUT/ok|ng|error/REL``, under a free name."""
        folder = MOVE_FOLDERS[row["decision"] if not row["error"] else ""]
        return unique_destination(self.out_dir / folder / path.relative_to(self.in_dir), taken)

    def _move(self, source: Path, dest: Path) -> None:
        """Move a scored file (across file systems too); one removed meanwhile is left alone."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            shutil.move(source, dest)

    def run(
        self,
        poll_s: float = 1.0,
        stop: threading.Event | None = None,
        once: bool = False,
        timeout_s: float | None = None,
    ) -> int:
        """Scan every ``poll_s`` seconds and score what is ready, until ``stop`` is set or ``timeout_s`` has passed;
        with ``once``, stop when nothing is left waiting. Returns the number of files scored."""
        stop = stop or threading.Event()
        end = None if timeout_s is None else self.clock() + timeout_s
        count = 0
        while not stop.is_set() and (end is None or self.clock() < end):
            ready = self.ready()
            if ready:
                count += len(self.score(ready))
            elif once and not self._seen:
                break
            stop.wait(poll_s)
        return count
