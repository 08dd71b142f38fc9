import json

from indad.results import markdown_table, save_results


def _report():
    res = {
        "image_auroc": 0.9,
        "pixel_auroc": float("nan"),
        "aupro": 0.5,
        "f1_max": 0.8,
        "timings": {"fit_s": 12.0, "predict_ms_per_image": 30.0},
        "image_auroc_per_defect": {"crack": 0.7},
    }
    return {
        "method": "patchcore",
        "created": "2026-01-01T00:00:00",
        "datasets": {"a": res, "b": dict(res)},
        "average": {"image_auroc": 0.9, "pixel_auroc": float("nan"), "aupro": 0.5, "f1_max": 0.8},
        "params": {"f_coreset": 0.1},
        "backbone": {"name": "x", "weights_source": "y", "fingerprint": "z"},
        "device": "cpu",
    }


def test_files_and_nan_handling(tmp_path):
    per_image = {
        "a": {"paths": ["p1"], "defects": ["good"], "labels": [0], "scores": [1.5]},
        "b": {"paths": ["p2"], "defects": ["crack"], "labels": [1], "scores": [2.5]},
    }
    paths = save_results(_report(), per_image, tmp_path / "out", "run")
    data = json.loads(paths["json"].read_text())
    assert data["datasets"]["a"]["pixel_auroc"] is None  # NaN is not valid JSON
    table = paths["markdown"].read_text()
    assert "| **average** |" in table and "n/a" in table and "crack" in table
    assert paths["scores"].read_text().splitlines()[1:] == ["a,p1,good,0,1.5", "b,p2,crack,1,2.5"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["run.json", "run.md", "run_scores.csv"]


def test_single_dataset_table_has_no_average_row():
    report = _report()
    del report["datasets"]["b"]
    assert "average" not in markdown_table(report)
