import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from indad.cli.main import cli
from indad.config import ConfigError, build_model, builtin_configs, load_config
from indad.data.transforms import as_size
from indad.experiment import expand_datasets
from indad.methods import METHODS
from indad.metrics import image_auroc
from tests.helpers import REPO, make_layout


def test_run_writes_results(tmp_path, datasets_root):
    out = tmp_path / "results"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "patchcore",
            "--dataset",
            "hazelnut_reduced",
            "--data-root",
            str(datasets_root),
            "--results-dir",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "image ROC AUC" in result.output and "hazelnut_reduced" in result.output
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 3 and not any(f.startswith(".") for f in files)
    report = json.loads(next(out.glob("*.json")).read_text())
    res = report["datasets"]["hazelnut_reduced"]
    assert res["image_auroc"] >= 0.9 and res["pixel_auroc"] >= 0.95
    assert report["params"]["f_coreset"] == 0.01 and report["backbone"]["weights_source"] == "PyPI package"
    assert {"fit_s", "features_s", "coreset_s", "predict_ms_per_image"} <= set(res["timings"])
    assert {"torch", "timm", "faiss", "indad"} <= set(report["versions"])
    csv_lines = next(out.glob("*_scores.csv")).read_text().splitlines()
    assert csv_lines[0] == "dataset,path,defect,label,score" and len(csv_lines) == 11
    # The per-image CSV holds the scores the report's metrics came from.
    rows = [line.split(",") for line in csv_lines[1:]]
    assert {r[0] for r in rows} == {"hazelnut_reduced"} and sum(r[3] == "1" for r in rows) == 8
    assert all((r[2] == "good") == (r[3] == "0") for r in rows)
    assert image_auroc([int(r[3]) for r in rows], [float(r[4]) for r in rows]) == pytest.approx(
        res["image_auroc"], abs=1e-3
    )


def test_seed_style_script(tmp_path):
    """python indad/run.py METHOD --dataset DATASET works from the repository root."""
    layout = make_layout(tmp_path / "data" / "parts", n_train=3, size=(32, 32))
    env = {**os.environ, "INDAD_DATA_DIR": str(tmp_path / "data")}
    config = tmp_path / "small.yaml"
    config.write_text("method: patchcore\nimage_size: 32\nf_coreset: 0.5\n")
    proc = subprocess.run(
        [
            sys.executable,
            "indad/run.py",
            "patchcore",
            "--dataset",
            "parts",
            "--config",
            str(config),
            "--results-dir",
            str(tmp_path / "res"),
            "-q",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "parts" in proc.stdout and layout.is_dir()
    assert len(list((tmp_path / "res").glob("*.json"))) == 1
    report = json.loads(next((tmp_path / "res").glob("*.json")).read_text())
    assert report["method"] == "patchcore" and report["params"]["f_coreset"] == 0.5  # the config was used
    assert report["params"]["image_size"] == [32, 32]
    res = report["datasets"]["parts"]
    assert res["n_images"] == 4 and res["n_pixel_images"] == 4  # 2 good, 2 scratch


def _invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: patchcore\nf_corset: 0.1\n")
    r = _invoke("run", "patchcore", "--config", str(bad))
    assert r.exit_code == 1 and "f_corset" in r.output and "bad.yaml" in r.output and "Traceback" not in r.output
    bad.write_text("method: patchcore\nf_coreset: lots\n")
    assert "f_coreset must be a number" in _invoke("run", "patchcore", "--config", str(bad)).output
    bad.write_text("method: [unclosed\n")
    assert "cannot read config" in _invoke("run", "patchcore", "--config", str(bad)).output
    r = _invoke("run", "patchcore", "--dataset", "nothing_here", "--data-root", str(tmp_path), "--no-download")
    assert r.exit_code == 1 and "nothing_here" in r.output
    r = _invoke("run", "patchcore", "--backbone", "no_such_net", "--dataset", str(make_layout(tmp_path / "d")))
    assert r.exit_code == 1 and "unknown backbone 'no_such_net'" in r.output
    r = _invoke(
        "run",
        "patchcore",
        "--config",
        "patchcore_paper",
        "--dataset",
        "x",
        "--data-root",
        str(tmp_path),
        "--no-download",
    )
    assert r.exit_code == 1 and "not found" in r.output
    assert _invoke("run", "unknown-method").exit_code == 2


def test_shipped_configs_are_valid_and_defaults_match_the_code():
    configs = builtin_configs()
    assert {"patchcore", "patchcore_paper"} <= set(configs)
    assert (REPO / "configs" / "patchcore.yaml").is_file()
    for name in configs:
        cfg = load_config(name)
        assert cfg["method"] in METHODS
    # The offline default config is exactly the method's defaults.
    for method, cls in METHODS.items():
        defaults = cls(progress=False).hparams()
        for key, value in load_config(method)["params"].items():
            if key in ("image_size", "crop_size") and value is not None:
                value = list(as_size(value, key))
            if key == "members":  # an ensemble keeps every hyperparameter of its members
                value = cls(members=value, progress=False).hparams()[key]
            assert value == defaults[key], (method, key)


def test_config_method_mismatch(tmp_path):
    other = tmp_path / "c.yaml"
    other.write_text("method: padim\n")
    with pytest.raises(ConfigError, match="unknown method 'padim'|not 'patchcore'"):
        load_config(other, "patchcore")


def test_build_model_names_bad_values():
    with pytest.raises(ConfigError, match="f_coreset must be in"):
        build_model("patchcore", {"f_coreset": 2.0})


def test_all_expands_to_mvtec():
    names = expand_datasets(["all", "mtd"])
    assert len(names) == 16 and names[0] == "bottle" and names[-1] == "mtd"


def test_console_script_help():
    r = _invoke("run", "--help")
    assert r.exit_code == 0 and "--dataset" in r.output and "--data-root" in r.output
    assert _invoke("--version").output.strip().endswith("0.1.0")


def test_a_config_sets_tiles_and_a_region_of_interest_beside_it(tmp_path):
    import numpy as np

    from tests.helpers import save_image

    picture = np.zeros((64, 64), dtype=np.uint8)
    picture[:, :32] = 255
    save_image(tmp_path / "cfg" / "roi.png", picture)
    config = tmp_path / "cfg" / "line.yaml"
    config.write_text(
        "method: padim\nimage_size: [64, 128]\nresize: fit\ntile: {size: 64, overlap: 16}\nroi: roi.png\n"
    )
    model = build_model("padim", load_config(config)["params"], str(config))
    assert model.tiles_per_image == 3 and model.preprocess.mode == "fit"
    assert model.roi_mask is not None and model.roi_mask[:, 32:64].all() and not model.roi_mask[:, 64:].any()
    config.write_text("method: padim\ntile: {size: 64, stride: 16}\n")
    with pytest.raises(ConfigError, match=r"line.yaml: tile must be \{size: N, overlap: M\}"):
        build_model("padim", load_config(config)["params"], str(config))
