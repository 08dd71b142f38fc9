"""The review loop from the command line: predict --record, review, feedback, retrain (and without feedback)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from indad.cli.main import cli
from indad.export.model_file import read_header
from indad.lifecycle.record import PredictionRecord


def predict_into_record(model: Path, images: Path, out: Path, record: Path) -> None:
    args = ["predict", str(model), str(images), "-o", str(out), "-q", "--record", str(record)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output


def test_predict_records_feedback_then_retrain(tiny_model_file: Path, tiny_dataset: Path, tmp_path: Path):
    db = tmp_path / "record.db"
    predict_into_record(tiny_model_file, tiny_dataset / "test", tmp_path / "out", db)
    rec = PredictionRecord(db)
    rows = rec.rows()
    assert len(rows) == 4 and {r["model"] for r in rows} == {"model"}
    version = read_header(tiny_model_file)["lineage"]["version"]
    assert {r["model_version"] for r in rows} == {version}
    assert all(r["width"] == 64 and len(r["image_hash"]) == 64 for r in rows)

    listing = CliRunner().invoke(cli, ["review", str(db), "--order", "uncertain"])
    assert listing.exit_code == 0 and rows[0]["id"] in listing.output

    goods = [r for r in rows if "/good/" in r["source"]]
    defects = [r for r in rows if "/good/" not in r["source"]]
    runner = CliRunner()
    for r in goods:
        out = runner.invoke(cli, ["feedback", str(db), r["id"], "false_alarm", "--reason", "good part"])
        assert out.exit_code == 0, out.output
    runner.invoke(cli, ["feedback", str(db), defects[0]["id"], "false_alarm"])
    out = runner.invoke(cli, ["feedback", str(db), defects[0]["id"], "confirmed", "--reason", "scratch"])
    assert out.exit_code == 0 and "before: false_alarm" in out.output
    bad = runner.invoke(cli, ["feedback", str(db), "no-such-id", "confirmed"])
    assert bad.exit_code == 1 and "no-such-id" in bad.output
    bad = runner.invoke(cli, ["feedback", str(db), rows[0]["id"], "maybe"])
    assert bad.exit_code == 2 and "maybe" in bad.output

    new = tmp_path / "model-v2.indad"
    out = runner.invoke(cli, ["retrain", str(tiny_model_file), "--record", str(db), "--out", str(new)])
    assert out.exit_code == 0, out.output
    assert "false alarms fed back" in out.output and "labelled defects: missed" in out.output
    lineage = read_header(new)["lineage"]
    assert lineage["parent"] == version
    changes = lineage["changes"]
    assert changes["false_alarms"] == 2 and changes["images_added"] == 1 and changes["calibration_images"] >= 1
    assert changes["validation_set"] == [{"image_hash": defects[0]["image_hash"], "label": 1}]
    assert "thresholds_before" in changes and "thresholds_after" in changes


def test_retrain_without_feedback_says_so_and_writes_nothing(tiny_model_file: Path, tiny_dataset, tmp_path: Path):
    db = tmp_path / "record.db"
    predict_into_record(tiny_model_file, tiny_dataset / "test" / "good", tmp_path / "out", db)
    new = tmp_path / "new.indad"
    out = CliRunner().invoke(cli, ["retrain", str(tiny_model_file), "--record", str(db), "--out", str(new)])
    assert out.exit_code == 1 and "no feedback" in out.output and "nothing written" in out.output
    assert not new.exists()


def test_predict_goes_on_when_the_record_is_corrupt(tiny_model_file: Path, tiny_dataset: Path, tmp_path: Path):
    db = tmp_path / "record.db"
    db.write_bytes(b"garbage" * 1000)
    out = str(tmp_path / "o")
    result = CliRunner().invoke(
        cli, ["predict", str(tiny_model_file), str(tiny_dataset / "test"), "-o", out, "--record", str(db)]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "predictions.csv").is_file()
    assert "4 results could NOT be recorded" in result.output and db.read_bytes() == b"garbage" * 1000


def test_the_hot_folder_records_and_keeps_moved_images(tiny_model_file: Path, tiny_dataset: Path, tmp_path: Path):
    import shutil

    inbox = tmp_path / "in"
    shutil.copytree(tiny_dataset / "test" / "good", inbox)
    db, kept = tmp_path / "record.db", tmp_path / "kept"
    args = ["watch", str(tiny_model_file), str(inbox), "-o", str(tmp_path / "out"), "--once", "--settle", "0",
            "--move", "--record", str(db), "--images", str(kept)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rec = PredictionRecord(db, kept)
    rows = rec.rows()
    assert len(rows) == 2 and not list(inbox.iterdir())  # moved away, yet the record still finds the images
    assert all(rec.image_path(r) == kept / f"{r['image_hash']}.png" for r in rows)
