"""Output files written whole or not at all; CSV text."""

import csv
import io
import os

import pytest

from indad.files import atomic_output, csv_text, partial_path, remove_partials, write_atomic


def test_write_atomic_keeps_the_old_file_on_failure(tmp_path):
    target = write_atomic(tmp_path / "r.json", "old")

    with pytest.raises(TypeError):
        write_atomic(target, b"not text")  # fails half way, after the temporary file exists
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    out = tmp_path / "sub" / "out"
    with atomic_output(out) as partial:
        assert partial.parent == out.parent and partial.name.startswith(".out.") and not partial.exists()
        (partial / "a").mkdir(parents=True)
        (partial / "a" / "x.txt").write_text("1")
    assert (out / "a" / "x.txt").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_output(out) as partial:
        partial.mkdir()
        (partial / "y.txt").write_text("2")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in out.rglob("*")) == ["a", "x.txt"]  # the old folder, untouched
    with atomic_output(out) as partial:
        partial.mkdir()
        (partial / "y.txt").write_text("2")
    assert sorted(p.name for p in out.rglob("*")) == ["y.txt"]  # the old folder is gone, not merged
    assert [p.name for p in out.parent.iterdir()] == ["out"]  # no partials left
    assert os.stat(out).st_mode & 0o777 == 0o777 & ~_umask()  # as if created directly


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_remove_partials_removes_what_killed_writers_left(tmp_path):
    kept = tmp_path / "heatmaps" / "a.png"
    kept.parent.mkdir()
    kept.write_text("done")
    partial_path(kept).write_text("half")  # a killed picture writer's file
    partial_path(tmp_path / "out").mkdir()  # a killed folder writer's folder
    (tmp_path / ".hidden").write_text("not ours")
    remove_partials(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        ".hidden",
        "heatmaps",
        "heatmaps/a.png",
    ]


def test_csv_text_header_rows_and_quoting():
    rows = [{"path": "a,b.png", "score": "1.5"}, {"path": "c.png"}]
    text = csv_text(rows, ["path", "score"])
    assert text.splitlines() == ["path,score", '"a,b.png",1.5', "c.png,"]
    assert next(csv.DictReader(io.StringIO(text))) == rows[0]
    assert csv_text(rows[:1]).splitlines()[0] == "path,score"  # columns of the first row
    with pytest.raises(ValueError):
        csv_text([{"other": 1}], ["path"])
