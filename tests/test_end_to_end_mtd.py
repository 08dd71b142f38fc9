"""Each method end to end on the real MTD dataset with its default offline configuration (minutes)."""

import json

import pytest
from click.testing import CliRunner

from indad.cli.main import cli


@pytest.mark.slow
@pytest.mark.parametrize("method,image_min,pixel_min", [("patchcore", 0.975, 0.82), ("padim", 0.85, 0.70), ("spade", 0.85, 0.70)])
def test_mtd_default_config(tmp_path, mtd, method, image_min, pixel_min):
    out = tmp_path / "results"
    result = CliRunner().invoke(cli, ["run", method, "--dataset", "mtd", "--data-root", str(mtd.parent),
                                      "--results-dir", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(next(out.glob("*.json")).read_text())
    res = report["datasets"]["mtd"]
    print(json.dumps({k: res[k] for k in ("image_auroc", "pixel_auroc", "aupro", "f1_max", "timings",
                                           "peak_rss_mb", "image_auroc_per_defect")}, indent=1))
    assert res["n_images"] == 583 and res["n_pixel_images"] == 583
    assert res["image_auroc"] >= image_min
    assert res["pixel_auroc"] >= pixel_min
