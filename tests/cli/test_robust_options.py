"""The command-line options of the robustness settings: --variation, --variation-copies, --photometric, --align."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from indad.cli.main import cli
from indad.cli.options import parse_variation
from indad.export.model_file import read_header
from tests.helpers import make_layout

VARIATION = {"brightness": 0.15, "rotate": 3, "jpeg": 70}


def test_the_command_line_parses_variation() -> None:
    assert parse_variation("brightness=0.15, rotate=3,jpeg=70") == VARIATION
    for bad in ("brightness", "brightness=", "=3", "rotate=three"):
        with pytest.raises(Exception, match="KEY=VALUE|must be a number"):
            parse_variation(bad)


def test_fit_from_the_command_line_keeps_the_settings(tmp_path: Path) -> None:
    data = make_layout(tmp_path / "d", n_train=4, size=(64, 64))
    out = tmp_path / "m.indad"
    args = ["fit", "patchcore", str(data), "-o", str(out), "--image-size", "64", "--holdout", "0", "-q"]
    result = CliRunner().invoke(cli, [*args, "--variation", "brightness=0.1,rotate=2", "--photometric", "standardize"])
    assert result.exit_code == 0, result.output
    hparams = read_header(out)["hparams"]
    assert hparams["variation"] == {"brightness": 0.1, "rotate": 2} and hparams["photometric"] == "standardize"
    bad = CliRunner().invoke(cli, [*args, "--variation", "lamp=0.1"])
    assert bad.exit_code != 0 and "unknown change 'lamp'" in bad.output
    bad = CliRunner().invoke(cli, [*args, "--variation", "brightness"])
    assert bad.exit_code != 0 and "KEY=VALUE" in bad.output
    assert json.loads(json.dumps(hparams))  # plain data


def test_align_is_refused_where_it_is_unsupported_naming_it(tmp_path: Path) -> None:
    """``--engine ray`` fits and ``indad export`` refuse ``--align`` with a clear error (no silent unaligned use)."""
    pytest.importorskip("cv2")
    data = make_layout(tmp_path / "d", n_train=4, size=(64, 64))
    out = tmp_path / "m.indad"
    args = ["fit", "patchcore", str(data), "-o", str(out), "--image-size", "64", "--holdout", "0", "-q"]
    on_ray = CliRunner().invoke(cli, [*args, "--align", "reference", "--engine", "ray"])
    assert on_ray.exit_code != 0 and 'align="reference" is not supported on Ray' in on_ray.output
    assert not out.exists()
    fitted = CliRunner().invoke(cli, [*args, "--align", "reference"])
    assert fitted.exit_code == 0, fitted.output
    for fmt in ("onnx", "torchscript"):
        exported = CliRunner().invoke(cli, ["export", str(out), "--format", fmt, "-o", str(tmp_path / f"m.{fmt}")])
        assert exported.exit_code != 0 and 'align="reference" registers images' in exported.output, exported.output
        assert not (tmp_path / f"m.{fmt}").exists()
