"""The sidebar's expected variation and photometric standardisation, as model parameters."""

from __future__ import annotations

import pytest

from indad.app.choices import VARIATION_SPECS, robust_params
from indad.errors import InputError
from indad.methods import PatchCore


def test_sliders_at_zero_are_off() -> None:
    values = {spec.name: 0.0 for spec in VARIATION_SPECS}
    assert robust_params(values, False) == {"variation": None, "photometric": "none"}


def test_the_sliders_make_a_variation_the_model_takes() -> None:
    params = robust_params({"brightness": 0.15, "rotate": 3.0, "shift": 0.0, "blur": 0.0, "jpeg": 70.0}, True)
    assert params == {"variation": {"brightness": 0.15, "rotate": 3.0, "jpeg": 70}, "photometric": "standardize"}
    assert PatchCore(**params).variation_spec is not None


def test_every_slider_range_is_one_the_model_accepts() -> None:
    robust_params({spec.name: spec.high for spec in VARIATION_SPECS}, False)
    with pytest.raises(InputError, match="variation.brightness"):
        robust_params({"brightness": 1.5}, False)
