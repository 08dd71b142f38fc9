"""The hyperparameter rules (indad.methods.params) and the plain form a model file keeps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from indad.errors import ConfigError, InputError
from indad.methods import SPADE, PaDiM, PatchCore
from indad.methods.params import Rule


@pytest.mark.parametrize(
    ("rule", "value", "message"),
    [
        (Rule(float, low=0, low_open=True), float("nan"), "must be a number, got nan"),
        (Rule(float, low=0), float("inf"), "must be a number, got inf"),
        (Rule(int, low=1), float("inf"), "must be an integer, got inf"),
        (Rule(int, low=1), 1.5, "must be an integer, got 1.5"),
        (Rule(int, low=1), "3x", "must be an integer, got '3x'"),
        (Rule(int, low=1), 0, "must be >= 1, got 0"),
        (Rule(float, low=0, high=1, low_open=True), 0.0, r"must be in \(0, 1\], got 0.0"),
        (Rule(bool), "true", "must be true or false, got 'true'"),
        (Rule(choices=("a", "b")), "c", "must be one of a, b, got 'c'"),
    ],
)
def test_a_rule_refuses_with_the_name_and_value(rule, value, message):
    with pytest.raises(InputError, match=f"^x {message}$"):
        rule.check("x", value)


def test_a_rule_returns_the_checked_type():
    assert Rule(int, low=1).check("k", np.int64(3)) == 3 and type(Rule(int).check("k", 3.0)) is int
    assert Rule(float).check("s", "0.5") == 0.5 and Rule(bool).check("b", np.bool_(True)) is True


def test_the_methods_refuse_non_finite_values():
    with pytest.raises(InputError, match="epsilon must be a number, got nan"):
        PaDiM(epsilon=float("nan"))
    with pytest.raises(InputError, match="blur_sigma must be a number, got nan"):
        SPADE(blur_sigma=float("nan"))


def test_the_model_file_keeps_sizes_and_tiles_in_their_checked_form():
    model = PatchCore(image_size=np.int64(96), crop_size=np.int64(64), tile={"size": np.int64(32)}, strides=None)
    params = model.hparams()
    json.dumps(params)  # numpy values from the caller become plain numbers
    assert params["image_size"] == [96, 96] and params["crop_size"] == [64, 64]
    assert params["tile"] == {"size": [32, 32], "overlap": 0} and params["strides"] == [8, 16]
    assert PatchCore(**params).hparams() == params  # the header rebuilds the same model
    assert model.image_size == 96 and model.tiling is not None and model.tiling.size == (32, 32)  # given, and checked


def test_a_config_names_itself_in_a_bad_size_error():
    from indad.config import build_model

    with pytest.raises(ConfigError, match="^cfg.yaml: image_size must be at least 16 pixels"):
        build_model("patchcore", {"image_size": 8}, "cfg.yaml")
