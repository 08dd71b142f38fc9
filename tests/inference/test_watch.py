import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from indad.cli.main import cli
from indad.inference import TorchScorer, predict_folder
from indad.inference.watch import LEDGER, TABLE, HotFolder
from tests.helpers import save_image


class Clock:
    """A clock the test moves on by hand (file settling without sleeping)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _drop(folder: Path, name: str, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    return save_image(folder / name, rng.integers(0, 255, (48, 56, 3), dtype=np.uint8))


def _ledger(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / LEDGER).read_text().splitlines()]


def _table(out: Path) -> list[dict]:
    return list(csv.DictReader((out / TABLE).open()))


@pytest.fixture()
def scorer(tiny_model):
    return TorchScorer(tiny_model)


def test_each_arriving_image_is_scored_once_when_settled_as_predict_scores_it(scorer, tmp_path):
    inbox, out, clock = tmp_path / "in", tmp_path / "out", Clock()
    folder = HotFolder(scorer, inbox.mkdir() or inbox, out, settle_s=1.0, clock=clock)
    a, b = _drop(inbox, "a.png", 0), _drop(inbox / "sub", "b.png", 1)
    (inbox / ".c.png.part").write_bytes(b"being written")  # hidden: never taken
    assert folder.ready() == []  # just seen: not settled yet
    clock.now = 0.5
    assert folder.ready() == []
    clock.now = 1.0
    ready = folder.ready()
    assert ready == [a, b]
    folder.score(ready)
    clock.now = 5.0
    assert folder.ready() == []  # scored once
    c = _drop(inbox, "c.png", 2)
    clock.now = 6.0
    folder.score(folder.ready())  # seen at 6.0
    clock.now = 7.0
    folder.score(folder.ready())
    rows, records = _table(out), _ledger(out)
    assert [r["path"] for r in rows] == [str(a), str(b), str(c)] == [r["path"] for r in records]
    reference = predict_folder(scorer, [a, b, c], tmp_path / "ref", progress=False).rows
    for row, record, want in zip(rows, records, reference, strict=True):
        assert row["score"] == want["score"] and row["decision"] == want["decision"]
        assert record["score"] == pytest.approx(float(want["score"]), rel=1e-5)
    assert (out / "heatmaps" / "sub" / "b.png").is_file() and (out / "masks" / "c.png").is_file()
    assert a.is_file()  # left in place without --move


def test_a_file_still_growing_waits(scorer, tmp_path):
    inbox, out, clock = tmp_path / "in", tmp_path / "out", Clock()
    inbox.mkdir()
    folder = HotFolder(scorer, inbox, out, settle_s=1.0, clock=clock)
    path = _drop(inbox, "a.png", 0)
    data = path.read_bytes()
    path.write_bytes(data[:100])
    folder.ready()
    clock.now = 0.9
    path.write_bytes(data)  # grew: seen anew
    assert folder.ready() == []
    clock.now = 1.5
    assert folder.ready() == []
    clock.now = 2.0
    assert folder.ready() == [path]


def test_restart_neither_scores_twice_nor_skips_and_finishes_moves(scorer, tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    names = ["a.png", "b.png", "c.png", "d.png"]
    paths = [_drop(inbox, n, i) for i, n in enumerate(names)]
    assert HotFolder(scorer, inbox, out, settle_s=0).run(poll_s=0.01, once=True, timeout_s=60) == 4
    # A crash mid-append leaves a torn last line: cut off on restart.
    text = (out / LEDGER).read_text()
    (out / LEDGER).write_text(text + text.splitlines()[-1][:20])
    e = _drop(inbox, "e.png", 9)
    # Restarted with --move: the recorded files are moved without being scored again, the new one is scored.
    again = HotFolder(scorer, inbox, out, move=True, settle_s=0)
    assert again.run(poll_s=0.01, once=True, timeout_s=60) == 1
    records = _ledger(out)
    assert [r["path"] for r in records] == [str(p) for p in paths] + [str(e)]
    assert [r["path"] for r in _table(out)] == [r["path"] for r in records]
    assert not list(inbox.glob("*.png"))
    for record in records:
        folder = {"good": "ok", "defective": "ng"}[record["decision"]]
        assert (out / folder / Path(record["path"]).name).is_file()
    assert records[-1]["moved_to"] == str(out / {"good": "ok", "defective": "ng"}[records[-1]["decision"]] / "e.png")
    # A third start finds nothing to do.
    assert HotFolder(scorer, inbox, out, move=True, settle_s=0).run(poll_s=0.01, once=True, timeout_s=10) == 0


def test_moves_sort_by_decision_keep_same_names_apart_and_send_unreadable_files_to_error(scorer, tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    first = _drop(inbox, "a.png", 0)
    folder = HotFolder(scorer, inbox, out, move=True, settle_s=0, unreadable_after_s=0)
    folder.run(poll_s=0.01, once=True, timeout_s=60)
    _drop(inbox, "a.png", 0)  # the same name again, later
    (inbox / "broken.png").write_bytes(b"\x89PNG truncated")
    folder.run(poll_s=0.01, once=True, timeout_s=60)
    records = _ledger(out)
    assert len(records) == 3 and records[0]["path"] == str(first)
    moved = sorted(str(Path(r["moved_to"]).relative_to(out)) for r in records)
    kind = {"good": "ok", "defective": "ng"}[records[0]["decision"]]
    assert moved == sorted([f"{kind}/a.png", f"{kind}/a.1.png", "error/broken.png"])
    assert all(Path(r["moved_to"]).is_file() for r in records)
    assert next(r for r in records if r["error"])["score"] is None


def test_watch_command(tiny_model, tmp_path):
    if tiny_model.method != "patchcore":
        pytest.skip("one method is enough for the command")
    model = tiny_model.save(tmp_path / "m.indad")
    inbox = tmp_path / "in"
    for i in range(3):
        _drop(inbox, f"{i}.png", i)
    args = ["watch", str(model), str(inbox), "-o", str(tmp_path / "out"), "--once", "--settle", "0", "--move"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "3 images scored" in result.output and len(_table(tmp_path / "out")) == 3
    assert not list(inbox.iterdir())


def _wait_for_lines(path: Path, n: int, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and len(path.read_text().splitlines()) >= n:
            return
        assert process.poll() is None, "indad watch exited"
        time.sleep(0.1)
    raise AssertionError(f"{path} did not reach {n} lines in {timeout} s")


def test_watch_process_killed_and_restarted(tiny_model, tmp_path):
    """A real ``indad watch`` process: images dropped while it runs are scored, it is killed (SIGKILL), images dropped
    while it is down are scored after a restart, and every image is in the results once."""
    if tiny_model.method != "patchcore":
        pytest.skip("one method is enough for the command")
    model = tiny_model.save(tmp_path / "m.indad")
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    cmd = [sys.executable, "-c", "from indad.cli.main import main; main()", "watch", str(model), str(inbox)]
    cmd += ["-o", str(out), "--move", "--poll", "0.1", "--settle", "0.3"]
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE"}
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for i in range(3):  # written under a hidden name and renamed, the safe hand-over
            _drop(inbox, f".{i}.partial.png", i).rename(inbox / f"{i}.png")
        _wait_for_lines(out / LEDGER, 3, process)
    finally:
        process.kill()
        process.wait(30)
    _drop(inbox, "3.png", 3)
    _drop(inbox / "sub", "4.png", 4)
    result = subprocess.run([*cmd, "--once"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    names = sorted(Path(r["path"]).name for r in _ledger(out))
    assert names == [f"{i}.png" for i in range(5)] and len(_table(out)) == 5
    assert not [p for p in inbox.rglob("*") if p.is_file()]


def test_move_needs_thresholds_and_the_input_folder_must_exist(tiny_model, tmp_path):
    import copy

    from indad.errors import InputError

    bare = copy.copy(tiny_model)
    bare.thresholds = None
    (tmp_path / "in").mkdir()
    with pytest.raises(InputError, match="no thresholds"):
        HotFolder(TorchScorer(bare), tmp_path / "in", tmp_path / "out", move=True)
    with pytest.raises(InputError, match="no such input folder"):
        HotFolder(TorchScorer(tiny_model), tmp_path / "nowhere", tmp_path / "out")


def test_a_file_removed_before_it_is_scored_is_recorded_as_an_error(scorer, tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    path = _drop(inbox, "a.png", 0)
    folder = HotFolder(scorer, inbox, out, move=True, settle_s=0)
    ready = folder.ready()
    path.unlink()
    folder.score(ready)
    (record,) = _ledger(out)
    assert record["error"] and record["score"] is None and not Path(record["moved_to"]).exists()


def test_files_in_hidden_folders_are_skipped_until_renamed_into_view(scorer, tmp_path):
    """Issue 23 item 10: ``IN/.staging/a.png`` is not taken; renamed to ``IN/a.png`` it is scored once."""
    inbox, out = tmp_path / "in", tmp_path / "out"
    staged = _drop(inbox / ".staging", "a.png", 0)
    folder = HotFolder(scorer, inbox, out, move=True, settle_s=0)
    assert folder.ready() == []
    assert folder.run(poll_s=0.01, once=True, timeout_s=30) == 0
    staged.rename(inbox / "a.png")
    assert folder.run(poll_s=0.01, once=True, timeout_s=30) == 1
    (record,) = _ledger(out)
    assert record["path"] == str(inbox / "a.png") and Path(record["moved_to"]).is_file()
    assert ".staging" not in record["moved_to"]


def test_files_that_are_not_images_are_reported_once_and_moved_to_error(scorer, tmp_path, capsys):
    """Issue 23 item 11: a file without an image extension is logged once (and with --move moved to error/)."""
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / "notes.txt").write_text("not an image")
    kept = HotFolder(scorer, inbox, out, settle_s=0)
    for _ in range(3):
        kept.ready()
    assert capsys.readouterr().err.count("notes.txt") == 1 and (inbox / "notes.txt").is_file()
    moving = HotFolder(scorer, inbox, tmp_path / "out2", move=True, settle_s=0)
    moving.run(poll_s=0.01, once=True, timeout_s=30)
    assert capsys.readouterr().err.count("notes.txt") == 1
    assert (tmp_path / "out2" / "error" / "notes.txt").read_text() == "not an image"
    assert not (inbox / "notes.txt").exists() and not (tmp_path / "out2" / LEDGER).exists()


def test_a_partial_image_is_read_again_while_it_changes(scorer, tmp_path):
    """Issue 23 item 12: a writer pausing longer than the settle time: the partial file fails to decode and is read
    again once it has changed (complete now): scored, not sent to error/."""
    inbox, out, clock = tmp_path / "in", tmp_path / "out", Clock()
    inbox.mkdir()
    whole = _drop(tmp_path, "whole.png", 0).read_bytes()
    path = inbox / "a.png"
    path.write_bytes(whole[: len(whole) // 2])
    folder = HotFolder(scorer, inbox, out, move=True, settle_s=1.0, clock=clock, unreadable_after_s=5.0)
    folder.ready()
    clock.now = 1.5  # the writer pauses past the settle time: the half file is read and fails
    folder.score(folder.ready())
    assert not (out / LEDGER).exists() and path.is_file()  # not unreadable yet: it may still change
    clock.now = 3.0
    assert folder.ready() == []
    path.write_bytes(whole)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # whatever the clock's grain
    clock.now = 3.5
    assert folder.ready() == []  # changed: settles again
    clock.now = 5.0
    folder.score(folder.ready())
    (record,) = _ledger(out)
    assert not record["error"] and record["score"] is not None and "error" not in record["moved_to"]
    # A file that stays broken counts as unreadable once unchanged for unreadable_after_s after its failed read.
    broken = inbox / "b.png"
    broken.write_bytes(whole[:100])
    folder.ready()
    clock.now = 6.0
    folder.score(folder.ready())
    clock.now = 10.0
    assert folder.ready() == []
    clock.now = 11.0
    folder.score(folder.ready())
    records = _ledger(out)
    assert len(records) == 2 and records[1]["error"] and Path(records[1]["moved_to"]).parent.name == "error"


def test_a_partial_image_changing_forever_is_unreadable_after_max_reads(scorer, tmp_path):
    inbox, out, clock = tmp_path / "in", tmp_path / "out", Clock()
    inbox.mkdir()
    path = inbox / "a.png"
    folder = HotFolder(scorer, inbox, out, settle_s=0, clock=clock, unreadable_after_s=100.0, max_reads=3)
    for i in range(3):
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(10 * (i + 1)))
        clock.now += 1.0
        folder.score(folder.ready())
    (record,) = _ledger(out)
    assert record["error"]


def test_the_same_file_dropped_again_with_its_time_kept_is_a_new_arrival(scorer, tmp_path):
    """Issue 23 item 13: ``cp -p`` of a file scored and moved before: a new ledger line and a ``.1`` name."""
    inbox, out = tmp_path / "in", tmp_path / "out"
    source = _drop(tmp_path, "a.png", 0)
    inbox.mkdir()
    folder = HotFolder(scorer, inbox, out, move=True, settle_s=0)
    for _ in range(2):
        subprocess.run(["cp", "-p", str(source), str(inbox / "a.png")], check=True)
        assert folder.run(poll_s=0.01, once=True, timeout_s=30) == 1
    first, second = _ledger(out)
    assert first["key"] == second["key"]
    assert [Path(r["moved_to"]).name for r in (first, second)] == ["a.png", "a.1.png"]
    assert all(Path(r["moved_to"]).is_file() for r in (first, second))
    # A restart with both recorded finds nothing to do.
    assert HotFolder(scorer, inbox, out, move=True, settle_s=0).run(poll_s=0.01, once=True, timeout_s=10) == 0
