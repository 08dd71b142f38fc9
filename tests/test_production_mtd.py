"""The production workflow on real MTD images: fit, save, load, export, predict a folder with ONNX Runtime.

On the fixed MTD subset in `make test`, on the whole test folder (583 images) in `make test-full` (marked slow).
"""

import csv

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import indad
from indad.cli.main import cli
from indad.data import scan_test, scan_train
from indad.inference.folder import output_name
from indad.methods import PatchCore
from indad.metrics import image_auroc
from tests.helpers import MTD_TEST_IMAGES, MTD_VARIANTS, assert_pictures_show_the_map, mtd_folder

# variant: (training images, every n-th test image also scored in torch, lowest image ROC AUC of the ONNX CSV).
# Full: a quick model of 135 of the 761 training images (0.85 measured; all 761 give 0.976).
# Small: the subset's 128 training images, 115 of them fitted (0.912 measured).
SETTINGS = {"full": (150, 60, 0.8), "small": (150, 10, 0.85)}


@pytest.mark.parametrize("variant", MTD_VARIANTS)
def test_fit_save_export_and_predict_the_mtd_test_folder(request, variant, tmp_path):
    mtd = mtd_folder(request, variant)
    n_train, step, auroc_min = SETTINGS[variant]
    train = [s.path for s in scan_train(mtd)][:n_train]
    model = PatchCore(progress=False).fit(train, holdout=0.1)
    path = model.save(tmp_path / "mtd.indad")
    sample = [s.path for s in scan_test(mtd)][::step]
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
    assert len(rows) == len(tests) == MTD_TEST_IMAGES[variant] and not any(row["error"] for row in rows.values())
    onnx_scores = np.array([float(rows[str(p)]["score"]) for p in sample])
    # An export searches the bank exactly: ONNX Runtime == torch with exact search. The default (HNSW) search
    # never finds a nearer patch than the exact one, so its scores are never lower.
    exact = indad.load(path)
    exact.search = "exact"
    exact.rebuild()
    reference = exact.predict(sample)
    np.testing.assert_allclose(onnx_scores, reference.scores, rtol=1e-4)
    assert np.all(before.scores >= reference.scores * (1 - 1e-5))
    # Every decision is the score against the model's calibrated image threshold.
    t = model.thresholds
    for row in rows.values():
        assert float(row["threshold"]) == pytest.approx(t.image, rel=1e-5)
        assert row["decision"] == ("defective" if float(row["score"]) >= float(row["threshold"]) else "good"), row
    labels = [s.label for s in tests]
    auroc = image_auroc(labels, [float(rows[str(s.path)]["score"]) for s in tests])
    decisions = [rows[str(s.path)]["decision"] == "defective" for s in tests]
    flagged = {lab: [d for d, x in zip(decisions, labels, strict=True) if x == lab] for lab in (0, 1)}
    print({"image_auroc": round(auroc, 4), "flagged_good": sum(flagged[0]), "flagged_defective": sum(flagged[1])})
    assert auroc >= auroc_min
    assert np.mean(flagged[1]) > np.mean(flagged[0])  # the threshold flags defective parts more often than good ones
    first = tests[0].path
    rel = output_name(first.relative_to(mtd / "test"))  # exp1_num_108719.jpg -> exp1_num_108719.jpg.png
    assert Image.open(out / "overlays" / rel).size == Image.open(first).size
    # The pictures of the sampled images show their torch anomaly maps.
    for p, amap in zip(sample, reference.maps, strict=True):
        assert_pictures_show_the_map(out, output_name(p.relative_to(mtd / "test")), p, amap, model.preprocess, t)
