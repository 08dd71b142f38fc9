"""The backbone runtime of every method (``backbone_runtime``, ``fit_runtime``) and SPADE's ``pixel_k``."""

import numpy as np
import pytest

import indad
from indad.errors import InputError
from indad.export.model_file import read_header, read_tensors, write_model_file
from indad.methods import SPADE, PaDiM, PatchCore
from tests.helpers import subset_layout

SMALL = {"image_size": 96, "batch_size": 8, "progress": False, "device": "cpu"}
PARAMS = {"padim": {"d_reduced": 40}, "spade": {"k": 3}}
METHODS = {"padim": PaDiM, "spade": SPADE}


@pytest.fixture(scope="module")
def mtd_tiny(mtd, tmp_path_factory):
    """16 MTD training images, 2 good and 1 of each defect type in the test split."""
    return subset_layout(mtd, tmp_path_factory.mktemp("mtd_tiny") / "mtd", 16, 2, 1)


@pytest.fixture(scope="module", params=sorted(METHODS))
def torch_fitted(request, mtd_tiny):
    """Each method fitted on real images with torch's features (the path before ONNX Runtime)."""
    cls = METHODS[request.param]
    model = cls(backbone_runtime="torch", fit_runtime="torch", **PARAMS[request.param], **SMALL).fit(mtd_tiny)
    return model, mtd_tiny


def rescored(model, **settings):
    """``model`` (the same fitted state) with other scoring settings."""
    for key, value in settings.items():
        setattr(model, key, value)
    model.rebuild()
    return model


def test_every_method_has_the_runtime_settings_and_checks_them():
    for cls in (PaDiM, SPADE, PatchCore):
        params = cls.param_defaults()
        assert params["backbone_runtime"] == "onnxruntime", cls
        assert params["fit_runtime"] == ("torch" if cls is PatchCore else "onnxruntime"), cls
        with pytest.raises(InputError, match="backbone_runtime must be one of"):
            cls(backbone_runtime="tensorrt")
        with pytest.raises(InputError, match="fit_runtime must be one of"):
            cls(fit_runtime="tvm")
    with pytest.raises(InputError, match="pixel_k must be >= 0"):
        SPADE(pixel_k=-1)


def test_onnxruntime_scores_equal_torch_on_real_images(torch_fitted):
    model, root = torch_fitted
    ref = rescored(model, backbone_runtime="torch").predict(root)
    fast = rescored(model, backbone_runtime="onnxruntime")
    got = fast.predict(root)
    sessions = list(fast.backbone._sessions.values())
    assert fast.module.runtime == "onnxruntime" and sessions and None not in sessions  # ONNX Runtime did run
    scale = float(np.abs(ref.maps).max())
    np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-3, atol=1e-4 * scale)
    np.testing.assert_allclose(got.maps, ref.maps, rtol=1e-3, atol=1e-3 * scale)


def test_a_fit_on_onnxruntime_features_scores_as_one_on_torch(torch_fitted):
    model, root = torch_fitted
    cls, params = type(model), PARAMS[model.method]
    fitted = cls(backbone_runtime="torch", fit_runtime="onnxruntime", **params, **SMALL).fit(root)
    assert fitted.module.runtime == "torch" and fitted.backbone._sessions  # fit on ONNX Runtime, scoring on torch
    ref, got = rescored(model, backbone_runtime="torch").predict(root), fitted.predict(root)
    scale = float(np.abs(ref.maps).max())
    np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-3, atol=1e-4 * scale)
    np.testing.assert_allclose(got.maps, ref.maps, rtol=1e-3, atol=1e-3 * scale)


def test_a_model_file_written_before_the_runtime_settings_loads_with_the_defaults(torch_fitted, tmp_path):
    model, root = torch_fitted
    path = model.save(tmp_path / "new.indad")
    header = read_header(path)
    metadata = {k: header[k] for k in ("method", "hparams", "backbone", "preprocess", "thresholds", "state")}
    for key in ("backbone_runtime", "fit_runtime", "pixel_k"):  # the keys files of before issue 16 lack
        metadata["hparams"].pop(key, None)
    old = write_model_file(tmp_path / "old.indad", read_tensors(path), metadata)
    loaded = indad.load(old, device="cpu")
    defaults = type(model).param_defaults()
    assert (loaded.backbone_runtime, loaded.fit_runtime) == (defaults["backbone_runtime"], defaults["fit_runtime"])
    ref = rescored(model, backbone_runtime=loaded.backbone_runtime).predict(root)
    got = loaded.predict(root)
    np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-5)


def test_pixel_k_keeps_the_image_scores_and_searches_the_nearest_images(mtd_tiny):
    model = SPADE(k=4, pixel_k=0, **SMALL).fit(mtd_tiny)
    every = model.predict(mtd_tiny)
    assert model.module.pixel_k == 4
    np.testing.assert_array_equal(rescored(model, pixel_k=4).predict(mtd_tiny).maps, every.maps)
    np.testing.assert_array_equal(rescored(model, pixel_k=9).predict(mtd_tiny).maps, every.maps)  # clipped to k
    fewer = rescored(model, pixel_k=2).predict(mtd_tiny)
    assert model.module.pixel_k == 2
    np.testing.assert_array_equal(fewer.scores, every.scores)
    # A subset of the gallery: every distance at least as large.
    assert (fewer.maps >= every.maps - 1e-4).all() and not np.allclose(fewer.maps, every.maps)
