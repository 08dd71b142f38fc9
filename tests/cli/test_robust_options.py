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
