"""Each method end to end on real MTD images with its default offline configuration.

`make test` runs each on the fixed MTD subset (tests/helpers.py::MTD_SMALL, seconds); `make test-full` also on the
whole dataset (minutes, marked slow).
"""

import json

import pytest
from click.testing import CliRunner

from indad.cli.main import cli
from tests.helpers import MTD_TEST_IMAGES, MTD_VARIANTS, mtd_folder

# Lowest image and pixel ROC AUC accepted. The subset's are about 0.05 below those measured on it
# (patchcore 0.911 / 0.866, padim 0.913 / 0.836, spade 0.801 / 0.833): a broken method scores about 0.5.
MINIMUMS = {
    ("patchcore", "full"): (0.975, 0.82),
    ("padim", "full"): (0.85, 0.70),
    ("spade", "full"): (0.85, 0.70),
    ("patchcore", "small"): (0.86, 0.81),
    ("padim", "small"): (0.86, 0.78),
    ("spade", "small"): (0.75, 0.78),
}


@pytest.mark.parametrize("variant", MTD_VARIANTS)
@pytest.mark.parametrize("method", ["patchcore", "padim", "spade"])
def test_mtd_default_config(tmp_path, request, method, variant):
    mtd = mtd_folder(request, variant)
    image_min, pixel_min = MINIMUMS[method, variant]
    out = tmp_path / "results"
    result = CliRunner().invoke(
        cli, ["run", method, "--dataset", "mtd", "--data-root", str(mtd.parent), "--results-dir", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(next(out.glob("*.json")).read_text())
    res = report["datasets"]["mtd"]
    print(
        json.dumps(
            {
                k: res[k]
                for k in (
                    "image_auroc",
                    "pixel_auroc",
                    "aupro",
                    "f1_max",
                    "timings",
                    "peak_rss_mb",
                    "image_auroc_per_defect",
                )
            },
            indent=1,
        )
    )
    n = MTD_TEST_IMAGES[variant]
    assert res["n_images"] == n and res["n_pixel_images"] == n
    assert res["image_auroc"] >= image_min
    assert res["pixel_auroc"] >= pixel_min
