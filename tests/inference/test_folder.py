import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import indad
from indad.cli.main import cli
from indad.data import Preprocess, make_loader
from indad.inference import TorchScorer, map_to_original, predict_folder
from indad.thresholds import Decision
from tests.helpers import assert_pictures_show_the_map, save_image

READABLE = ("a.jpg", "a.png", "sub/a.png")  # the images of the inputs fixture, in CSV order; sub/broken.png is not


def _digest(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "in"
    save_image(root / "a.png", rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
    save_image(root / "a.jpg", rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))  # same stem: no collision
    save_image(root / "sub" / "a.png", rng.integers(0, 255, (64, 64), dtype=np.uint8), "L")  # same name, other folder
    (root / "sub" / "broken.png").write_bytes(b"\x89PNG truncated")
    return root


def test_folder_prediction_writes_everything_and_reports_bad_files(tiny_model, inputs, tmp_path, capsys):
    before = _digest(inputs)
    out = tmp_path / "out"
    result = predict_folder(TorchScorer(tiny_model), [inputs], out, batch_size=2, progress=False)
    assert result.failed == 1 and "broken.png" in capsys.readouterr().err
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert [r["path"] for r in rows] == [
        str(inputs / "a.jpg"),
        str(inputs / "a.png"),
        str(inputs / "sub" / "a.png"),
        str(inputs / "sub" / "broken.png"),
    ]
    ok, bad = rows[1], rows[3]
    assert bad["error"] and bad["score"] == ""
    t = tiny_model.thresholds
    assert float(ok["normalized_score"]) == pytest.approx(float(ok["score"]) / t.image, rel=1e-4)
    assert ok["decision"] == ("defective" if float(ok["score"]) >= t.image else "good")
    for kind in ("heatmaps", "overlays", "masks"):
        assert Image.open(out / kind / "a.png").size == (70, 50)  # the original size
        assert Image.open(out / kind / "sub" / "a.png").size == (64, 64)
        assert Image.open(out / kind / "a.jpg.png").size == (40, 30)
    assert set(np.unique(np.asarray(Image.open(out / "masks" / "a.png")))) <= {0, 255}
    # The CSV's scores are the model's, and each picture shows its own image's anomaly map.
    pred = tiny_model.predict([inputs / name for name in READABLE])
    np.testing.assert_allclose([float(r["score"]) for r in rows[:3]], pred.scores, rtol=2e-5)
    assert [r["decision"] for r in rows[:3]] == ["defective" if d else "good" for d in pred.is_defective]
    for name, amap in zip(READABLE, pred.maps, strict=True):
        rel = Path(name if name.endswith(".png") else f"{name}.png")
        assert_pictures_show_the_map(out, rel, inputs / name, amap, tiny_model.preprocess, t)
    # Each image's defect regions are the connected parts of its mask picture (original size), in the JSONL.
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["path"] for r in records] == [r["path"] for r in rows] and records[3]["regions"] is None
    for row, record, name in zip(rows[:3], records[:3], READABLE, strict=True):
        rel = name if name.endswith(".png") else f"{name}.png"
        mask = np.asarray(Image.open(out / "masks" / rel)) > 0
        regions = record["regions"]
        assert int(row["regions"]) == len(regions) and sum(r["area"] for r in regions) == int(mask.sum())
        assert int(row["largest_area"]) == max((r["area"] for r in regions), default=0)
        for r in regions:
            x0, y0, x1, y1 = r["bbox"]
            assert mask[y0:y1, x0:x1].sum() >= r["area"] and r["peak"] >= t.pixel
    assert any(r["regions"] for r in records[:3])
    assert _digest(inputs) == before  # inputs untouched
    # An existing output folder is kept unless asked to overwrite it.
    with pytest.raises(FileExistsError, match="--overwrite"):
        predict_folder(TorchScorer(tiny_model), [inputs], out, progress=False)
    (out / "stale.txt").write_text("old")
    predict_folder(
        TorchScorer(tiny_model),
        [inputs / "a.png"],
        out,
        overwrite=True,
        progress=False,
        decision=Decision(min_area=10**6),
    )
    again = list(csv.DictReader((out / "predictions.csv").open()))
    assert not (out / "stale.txt").exists() and len(again) == 1
    assert again[0]["regions"] == again[0]["largest_area"] == "0"  # every region is below --min-area
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary leftovers


def test_cli_fit_predict_calibrate_update_export(tiny_root, inputs, tmp_path):
    run = CliRunner().invoke
    model = tmp_path / "m.indad"
    r = run(cli, ["fit", "padim", str(tiny_root), "-o", str(model), "-q"])
    assert r.exit_code == 0, r.output
    assert "thresholds from 1 held-out good images" in r.output
    fitted = indad.load(model)
    assert fitted.accumulator.count == 7 and fitted.thresholds.rule == "good_quantile"  # 8 good images, 1 held out
    r = run(cli, ["predict", str(model), str(inputs), "-o", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 1 and "1 unreadable" in r.output  # a broken image: non-zero exit, the rest scored
    assert (tmp_path / "out" / "overlays" / "a.png").is_file()
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    pred = fitted.predict([inputs / name for name in READABLE])
    np.testing.assert_allclose([float(row["score"]) for row in rows[:3]], pred.scores, rtol=2e-5)
    assert_pictures_show_the_map(
        tmp_path / "out", Path("a.png"), inputs / "a.png", pred.maps[1], fitted.preprocess, fitted.thresholds
    )
    r = run(cli, ["calibrate", str(model), "--validation", str(tiny_root), "-q"])
    assert r.exit_code == 0 and "f1_max thresholds" in r.output, r.output
    calibrated = indad.load(model).thresholds
    assert calibrated.rule == "f1_max" and calibrated.n_images == 4 and calibrated != fitted.thresholds
    r = run(cli, ["update", str(model), str(tiny_root / "test" / "good"), "-q"])
    assert r.exit_code == 0, r.output
    updated = indad.load(model)
    assert updated.accumulator.count == 7 + 2 and updated.thresholds == calibrated  # thresholds are kept
    r = run(cli, ["export", str(model), "--format", "torchscript"])
    assert r.exit_code == 0 and (tmp_path / "m.pt").is_file(), r.output
    images = next(iter(make_loader(tiny_root, updated.preprocess, "test", 4)))["image"]
    with torch.inference_mode():
        ref = updated.module(images)
    got = torch.jit.load(str(tmp_path / "m.pt"))(images)
    for g, e in zip(got, ref, strict=True):
        torch.testing.assert_close(g.detach(), e, rtol=1e-4, atol=1e-4 * float(e.abs().max()))
    r = run(cli, ["predict", str(model), str(inputs), "-o", str(tmp_path / "o2"), "--runtime", "onnx"])
    assert r.exit_code == 1 and "indad export" in r.output
    r = run(cli, ["calibrate", str(model)])
    assert r.exit_code == 2 and "exactly one of --good or --validation" in r.output
    r = run(cli, ["predict", str(tmp_path / "nope.indad"), str(inputs), "-o", str(tmp_path / "o3")])
    assert r.exit_code == 1 and "no such model file" in r.output


def test_symlinked_inputs_keep_their_folder_in_output_names(tiny_model, tmp_path):
    rng = np.random.default_rng(1)
    store = tmp_path / "store"
    for i, folder in enumerate(("good", "crack")):
        target = save_image(store / f"{i}.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        (tmp_path / "in" / folder).mkdir(parents=True)
        (tmp_path / "in" / folder / "a.png").symlink_to(target)
    out = tmp_path / "out"
    predict_folder(TorchScorer(tiny_model), [tmp_path / "in"], out, progress=False)
    assert (out / "heatmaps" / "good" / "a.png").is_file() and (out / "heatmaps" / "crack" / "a.png").is_file()


def test_map_back_to_the_original_with_a_crop():
    pre = Preprocess((8, 8), (4, 4), (0.5,) * 3, (0.5,) * 3)
    full = map_to_original(np.ones((4, 4), dtype=np.float32), pre, (16, 16))
    assert full.shape == (16, 16) and full[8, 8] == 1.0 and full[0, 0] == 0.0


def test_inputs_that_cannot_be_scored_raise_the_errors_of_the_data_modules(tmp_path):
    from indad.errors import DatasetLayoutError, ImageReadError, InputError
    from indad.inference.folder import collect_images, read_input
    from indad.inference.scorer import open_scorer

    with pytest.raises(ImageReadError, match="no such file or folder"):
        collect_images([tmp_path / "missing.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="no images in"):
        collect_images([tmp_path / "empty"])
    (tmp_path / "notes.txt").write_text("hello")
    assert "not an image file" in read_input(tmp_path / "notes.txt", None)["error"]
    with pytest.raises(InputError, match="unknown runtime"):
        open_scorer(tmp_path / "m.indad", "tflite")


def test_cli_tiles_region_of_interest_and_the_region_decision(hazelnut, tmp_path):
    """fit --image-size --resize --tile --overlap --roi reach the model; predict --decision regions judges by them."""
    run = CliRunner().invoke
    picture = np.zeros((256, 256), dtype=np.uint8)
    picture[32:224, 32:224] = 255
    roi = save_image(tmp_path / "roi.png", picture)
    model = tmp_path / "m.indad"
    shape = ["--image-size", "96x128", "--resize", "fit", "--tile", "64", "--overlap", "16", "--roi", str(roi)]
    r = run(cli, ["fit", "padim", str(hazelnut), "-o", str(model), "-q", "--holdout", "0.2", *shape])
    assert r.exit_code == 0, r.output
    fitted = indad.load(model)
    assert fitted.working_size == (96, 128) and fitted.preprocess.mode == "fit" and fitted.tiles_per_image == 6
    assert fitted.tiling.to_dict() == {"size": [64, 64], "overlap": 16}
    assert fitted.roi_mask is not None and not bool(fitted.roi_mask[:, :16].any())  # the letterbox bars: outside
    test = hazelnut / "test"
    decisions = {}
    for rule, min_area in (("score", "0"), ("regions", "0"), ("regions", "400")):
        out = tmp_path / f"out_{rule}_{min_area}"
        r = run(
            cli, ["predict", str(model), str(test), "-o", str(out), "-q", "--decision", rule, "--min-area", min_area]
        )
        assert r.exit_code == 0, r.output
        rows = list(csv.DictReader((out / "predictions.csv").open()))
        assert len(rows) == 10
        decisions[rule, min_area] = [row["decision"] for row in rows]
        for row in rows:
            by_regions = "defective" if int(row["regions"]) else "good"
            by_score = "defective" if float(row["score"]) >= fitted.thresholds.image else "good"
            assert row["decision"] == (by_regions if rule == "regions" else by_score), row
            if min_area != "0" and row["regions"] != "0":
                assert int(row["largest_area"]) >= int(min_area)
    assert decisions["regions", "400"] != decisions["score", "0"]  # a small region no longer makes a defect
    r = run(cli, ["fit", "padim", str(hazelnut), "-o", str(model), "--overlap", "8"])
    assert r.exit_code == 2 and "--overlap needs --tile" in r.output
    r = run(cli, ["fit", "padim", str(hazelnut), "-o", str(model), "--tile", "512"])
    assert r.exit_code == 1 and "does not fit" in r.output
