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
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.images import is_image_file
from ..errors import InputError
from ..files import csv_text, remove_partials, write_atomic
from ..line import pipeline as line
from ..line.result import stable_id
from ..thresholds import Decision
from .folder import CSV_COLUMNS, read_input, report_error, result_row, score_results
from .scorer import Scorer

LEDGER = "predictions.jsonl"
TABLE = "predictions.csv"
# Where --move puts a scored file, by its decision (an unreadable file: error).
MOVE_FOLDERS = {"good": "ok", "defective": "ng", "": "error"}
# Most reads of a file that does not decode while it keeps changing (a writer pausing mid-file) before it is unreadable.
MAX_READS = 5


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


def arrived_files(in_dir: Path, skip: Path) -> list[Path]:
    """The files under ``in_dir`` (recursively, by path), leaving out hidden files and folders and ``skip``."""
    found = []
    for root, dirs, files in os.walk(in_dir, followlinks=True):  # as a recursive glob does
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (Path(root) / d).resolve() != skip)
        found += [Path(root) / f for f in files if not f.startswith(".")]
    return sorted(found)


@dataclass
class HotFolder:
    """Scores the images arriving in ``in_dir`` once each; results and pictures in ``out_dir``.

    A file is scored once it is complete: unchanged in size and modification
    time for ``settle_s`` seconds (hidden files and files in hidden folders, such
    as a writer's partial ``.name.part`` or ``.staging/name``, are never taken:
    writing under a hidden name and renaming is the surest hand-over). A file that
    does not decode is read again each time it changes (a writer that paused),
    up to ``max_reads`` reads, and counts as unreadable once it has stayed the
    same for ``unreadable_after_s`` seconds after a failed read. With ``move``, a
    scored file is moved to ``out_dir/ok``, ``ng`` or ``error`` (unreadable),
    keeping its relative path; a file that is not an image by its extension is
    reported once and, with ``move``, moved to ``error`` (it gets no result line).
    ``publisher`` (the sinks' outbox) gets each result before it is recorded; its id
    follows from the file's key and the model version, so a file scored again after a
    crash is sent again under the same id (a receiver drops the duplicate).
    """

    scorer: Scorer
    in_dir: Path
    out_dir: Path
    move: bool = False
    settle_s: float = 1.0
    batch_size: int = 16
    decision: Decision = field(default_factory=Decision)
    clock: Callable[[], float] = time.monotonic
    unreadable_after_s: float = 10.0
    max_reads: int = MAX_READS
    publisher: line.Publisher | None = None
    on_rows: Callable[[list[dict]], Any] | None = None  # each batch's result rows, before any move (the record)
    _done: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)  # file key -> its ledger record
    _seen: dict[Path, tuple[str, float]] = field(default_factory=dict, init=False)  # file -> (key, first seen)
    _failed: dict[Path, tuple[str, float, int]] = field(default_factory=dict, init=False)  # (key, when, reads)
    _others: dict[Path, tuple[str, float]] = field(default_factory=dict, init=False)  # non-images, as _seen
    _reported: set[str] = field(default_factory=set, init=False)  # keys of the non-image files reported

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
        now, ready, current, others = self.clock(), [], {}, {}
        for path in arrived_files(self.in_dir, self.out_dir.resolve()):
            try:
                key = file_key(path.relative_to(self.in_dir), path.stat())
            except FileNotFoundError:  # gone between the listing and now
                continue
            if not is_image_file(path):
                seen_key, since = self._others.get(path, (key, now))
                others[path] = (key, since if seen_key == key else now)
                if now - others[path][1] >= self.settle_s:
                    self._not_an_image(path, key)
                continue
            if key in self._done and not self._arrived_again(path, key):
                continue
            if path in self._failed and self._failed[path][0] == key:  # unreadable, and unchanged since
                if now - self._failed[path][1] >= self.unreadable_after_s:
                    ready.append(path)
                current[path] = (key, self._failed[path][1])
                continue
            seen_key, since = self._seen.get(path, (key, now))
            since = since if seen_key == key else now
            current[path] = (key, since)
            if now - since >= self.settle_s:
                ready.append(path)
        self._seen, self._others = current, others
        self._failed = {p: f for p, f in self._failed.items() if p in current}
        return ready

    def _arrived_again(self, path: Path, key: str) -> bool:
        """Whether a recorded file is a new arrival: with ``move``, one whose earlier copy was moved already (a file
        dropped again with its time kept). Else, with ``move``, the move a restart left undone is finished."""
        if not self.move:
            return False
        record = self._done[key]
        moved_to = record.get("moved_to")
        if moved_to and Path(moved_to).exists():
            return True
        self._move(path, Path(moved_to or self._destination(path, record["row"], set())))
        return False

    def _not_an_image(self, path: Path, key: str) -> None:
        """Report a file that is not an image (by its extension) once; with ``move``, move it to ``error``."""
        if key not in self._reported:
            self._reported.add(key)
            action = "moved to error/" if self.move else "left in place"
            print(f"skipped: {path}: not an image file (by its extension): {action}", file=sys.stderr)
        if self.move:
            self._move(path, unique_destination(self.out_dir / MOVE_FOLDERS[""] / path.relative_to(self.in_dir), set()))

    def _retry_later(self, path: Path, key: str, item: dict[str, Any]) -> bool:
        """Whether an unreadable file is to be read again (it exists, was not read ``max_reads`` times, and has
        changed since its last failed read); if so it is remembered as failed now."""
        if not item["error"] or not path.is_file():
            return False
        last_key, _, reads = self._failed.get(path, ("", 0.0, 0))
        if last_key == key or reads + 1 >= self.max_reads:
            return False
        self._failed[path] = (key, self.clock(), reads + 1)
        return True

    def score(self, files: list[Path]) -> list[dict]:
        """Score ``files`` (batches of ``batch_size``), record each in the ledger and CSV, move it if asked."""
        rows = []
        for start in range(0, len(files), self.batch_size):
            batch = files[start : start + self.batch_size]
            keys = [self._seen[p][0] for p in batch]
            items = [read_input(p, self.scorer.preprocess) for p in batch]
            take = [not self._retry_later(p, k, item) for p, k, item in zip(batch, keys, items, strict=True)]
            for path in (p for p, scored_now in zip(batch, take, strict=True) if not scored_now):
                self._seen.pop(path, None)  # read again once it changes (see ready)
            batch = [p for p, scored_now in zip(batch, take, strict=True) if scored_now]
            keys = [k for k, scored_now in zip(keys, take, strict=True) if scored_now]
            items = [item for item, scored_now in zip(items, take, strict=True) if scored_now]
            if not batch:
                continue
            model = self.scorer.model_info
            pipeline = line.Pipeline(self.scorer, model, self.decision, publisher=self.publisher)
            ids = [stable_id(f"{key}|{model.name}|{model.version}") for key in keys]
            results = score_results(pipeline, batch, items, self.in_dir.absolute(), self.out_dir, ids)
            scored = [result_row(r) for r in results]
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
                self._failed.pop(path, None)
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
            elif once and not self._seen and not (self.move and self._others):
                break
            stop.wait(poll_s)
        return count
