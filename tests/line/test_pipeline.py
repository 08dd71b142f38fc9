"""The result type and the one result pipeline."""

from __future__ import annotations

import hashlib
from dataclasses import fields
from pathlib import Path

import numpy as np
from PIL import Image

from indad.export.model_file import model_version, read_header, read_model_info
from indad.line.pipeline import Input, Pipeline
from indad.line.result import LineResult, pixels_hash, stable_id

FIELDS = [
    "id", "time", "source", "image_hash", "width", "height", "score", "normalized_score", "decision", "threshold",
    "regions", "model", "model_version", "trigger_id", "error",
]  # fmt: skip


def test_the_result_fields_others_build_on() -> None:
    assert [f.name for f in fields(LineResult)] == FIELDS


def test_model_version_is_the_lineage_else_the_file_hash(line_model: Path) -> None:
    header = read_header(line_model)
    digest = hashlib.sha256(line_model.read_bytes()).hexdigest()
    assert model_version(line_model, header) == header["lineage"]["version"]  # every fitted model has one
    without = {k: v for k, v in header.items() if k != "lineage"}  # a model file from before versions
    assert model_version(line_model, without) == digest[:12]
    assert model_version(line_model, header | {"lineage": {"version": "v7", "parent": "v6"}}) == "v7"
    assert read_model_info(line_model).name == "parts"


def test_stable_ids_look_like_uuid4_and_repeat() -> None:
    a, b = stable_id("x|1|2"), stable_id("x|1|3")
    assert a == stable_id("x|1|2") and a != b and len(a) == 32 and a[12] == "4"


def test_image_hash_is_of_the_pixels(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "a.png")
    assert pixels_hash(Image.open(tmp_path / "a.png")) == hashlib.sha256(array.tobytes()).hexdigest()


class Collect:
    def __init__(self) -> None:
        self.results: list[LineResult] = []

    def publish(self, results: list[LineResult]) -> None:
        self.results += results


def test_pipeline_judges_writes_pictures_and_publishes_every_result(
    line_model: Path, tiny_root: Path, tmp_path: Path
) -> None:
    from indad.inference import open_scorer

    scorer = open_scorer(line_model)
    images = sorted((tiny_root / "test").rglob("*.png"))[:3]
    items = [
        Input(str(p), Image.open(p).convert("RGB"), picture=Path(p.parent.name, p.name), trigger_id="t") for p in images
    ]
    items.append(Input("broken.png", None, error="truncated"))
    sink = Collect()
    scored = Pipeline(scorer, read_model_info(line_model), publisher=sink).run(items, tmp_path)
    results = [s.result for s in scored]
    assert sink.results == results
    t = scorer.thresholds
    assert t is not None
    for r in results[:3]:
        assert r.score is not None and r.normalized_score == r.score / t.image and r.threshold == t.image
        assert r.decision in ("good", "defective") and r.regions is not None and r.trigger_id == "t"
        assert r.model == "parts" and not r.error
    assert results[3].error == "truncated" and results[3].score is None and results[3].image_hash == ""
    written = sorted(p.relative_to(tmp_path / "masks") for p in (tmp_path / "masks").rglob("*.png"))
    assert written == sorted(Path(p.parent.name, p.name) for p in images)


def test_hot_folder_sends_a_file_scored_again_under_the_same_id(
    line_model: Path, tiny_root: Path, tmp_path: Path
) -> None:
    """After a crash between the outbox and the ledger, the file is scored again: its result repeats its id."""
    import shutil

    from indad.inference import open_scorer
    from indad.inference.watch import HotFolder

    inbox = tmp_path / "inbox"
    shutil.copytree(tiny_root / "test" / "good", inbox)
    scorer, sink = open_scorer(line_model), Collect()
    HotFolder(scorer, inbox, tmp_path / "out", settle_s=0, publisher=sink).run(0.01, once=True)
    (tmp_path / "out" / "predictions.jsonl").unlink()  # the ledger lost: the files are scored again
    HotFolder(scorer, inbox, tmp_path / "out", settle_s=0, publisher=sink).run(0.01, once=True)
    first, second = sink.results[:2], sink.results[2:]
    assert len(first) == len(second) == 2 and [r.id for r in first] == [r.id for r in second]
    assert len({r.id for r in first}) == 2 and all(r.model == "parts" for r in first)
