"""PatchCore end to end on the real MTD dataset with the default offline configuration (minutes)."""

import json

import pytest
from click.testing import CliRunner

from indad.cli.main import cli


@pytest.mark.slow
def test_patchcore_mtd_default_config(tmp_path, mtd):
    out = tmp_path / "results"
    result = CliRunner().invoke(cli, ["run", "patchcore", "--dataset", "mtd", "--data-root", str(mtd.parent),
                                      "--results-dir", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(next(out.glob("*.json")).read_text())
    res = report["datasets"]["mtd"]
    print(json.dumps({k: res[k] for k in ("image_auroc", "pixel_auroc", "aupro", "f1_max", "timings",
                                           "peak_rss_mb", "image_auroc_per_defect")}, indent=1))
    assert res["n_images"] == 583 and res["n_pixel_images"] == 583
    assert res["image_auroc"] >= 0.975
    assert res["pixel_auroc"] >= 0.82
