"""The sidebar's expected variation, photometric standardisation and alignment, as model parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from indad.app.choices import VARIATION_SPECS, robust_params
from indad.errors import InputError
from indad.methods import PatchCore
from tests.helpers import REPO, make_layout


def test_sliders_at_zero_are_off() -> None:
    values = {spec.name: 0.0 for spec in VARIATION_SPECS}
    assert robust_params(values, False) == {"variation": None, "photometric": "none", "align": "none"}


def test_the_sliders_make_a_variation_the_model_takes() -> None:
    params = robust_params({"brightness": 0.15, "rotate": 3.0, "shift": 0.0, "blur": 0.0, "jpeg": 70.0}, True)
    variation = {"brightness": 0.15, "rotate": 3.0, "jpeg": 70}
    assert params == {"variation": variation, "photometric": "standardize", "align": "none"}
    assert PatchCore(**params).variation_spec is not None


def test_the_align_toggle_asks_for_alignment_to_a_reference() -> None:
    pytest.importorskip("cv2")
    params = robust_params({}, False, align=True)
    assert params == {"variation": None, "photometric": "none", "align": "reference"}
    assert PatchCore(**params).align == "reference"


def test_every_slider_range_is_one_the_model_accepts() -> None:
    robust_params({spec.name: spec.high for spec in VARIATION_SPECS}, False)
    with pytest.raises(InputError, match="variation.brightness"):
        robust_params({"brightness": 1.5}, False)


def test_the_sidebar_offers_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    make_layout(tmp_path / "parts", n_train=4, size=(64, 64))
    monkeypatch.setenv("INDAD_DATA_DIR", str(tmp_path))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    at.run()
    at.slider(key="variation_brightness").set_value(0.15)
    at.slider(key="variation_jpeg").set_value(70.0)
    at.toggle(key="photometric").set_value(True)
    at.toggle(key="align").set_value(True)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.slider(key="variation_brightness").value == 0.15 and at.toggle(key="align").value
