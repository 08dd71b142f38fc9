"""The production workflow on real MTD images: fit, save, load, export, predict a folder with ONNX Runtime."""

import csv

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import indad
from indad.cli.main import cli
from indad.data import scan_test, scan_train
from indad.inference.folder import output_name
from indad.metrics import image_auroc
from indad.models import PatchCore


@pytest.mark.slow
def test_fit_save_export_and_predict_the_mtd_test_folder(mtd, tmp_path):
    train = [s.path for s in scan_train(mtd)][:150]  # a quick model: 150 of the 761 training images
    model = PatchCore(progress=False).fit(train, holdout=0.1)
    path = model.save(tmp_path / "mtd.indad")
    sample = [s.path for s in scan_test(mtd)][::60]
    loaded = indad.load(path)
    before, after = model.predict(sample), loaded.predict(sample)
    assert np.array_equal(before.scores, after.scores) and np.array_equal(before.maps, after.maps)

    run = CliRunner().invoke
    assert run(cli, ["export", str(path), "--format", "onnx"]).exit_code == 0
    out = tmp_path / "out"
    r = run(cli, ["predict", str(tmp_path / "mtd.onnx"), str(mtd / "test"), "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    rows = {row["path"]: row for row in csv.DictReader((out / "predictions.csv").open())}
    tests = scan_test(mtd)
    assert len(rows) == len(tests) == 583 and not any(row["error"] for row in rows.values())
    onnx_scores = np.array([float(rows[str(p)]["score"]) for p in sample])
    np.testing.assert_allclose(onnx_scores, before.scores, rtol=1e-4)  # ONNX Runtime == torch
    labels = [s.label for s in tests]
    auroc = image_auroc(labels, [float(rows[str(s.path)]["score"]) for s in tests])
    decisions = [rows[str(s.path)]["decision"] == "defective" for s in tests]
    print({"image_auroc": round(auroc, 4), "flagged_good": sum(d for d, lab in zip(decisions, labels) if lab == 0),
           "flagged_defective": sum(d for d, lab in zip(decisions, labels) if lab == 1)})
    assert auroc >= 0.8  # a model of 135 images (0.85 measured); all 761 give 0.976
    first = tests[0].path
    rel = output_name(first.relative_to(mtd / "test"))  # exp1_num_108719.jpg -> exp1_num_108719.jpg.png
    assert Image.open(out / "overlays" / rel).size == Image.open(first).size
