"""The variation, photometric and align hyperparameters of every method: checks, fit, model file, config, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from indad.config import build_model, load_config
from indad.data.photometric import Standardized
from indad.errors import ConfigError, InputError
from indad.export.graph import export_model
from indad.export.model_file import read_header
from indad.methods import METHODS, Ensemble, PatchCore, load_model
from tests.helpers import TINY_PARAMS, shared_datasets

VARIATION = {"brightness": 0.15, "rotate": 3, "jpeg": 70}


@pytest.fixture(scope="module")
def nuts() -> list[Path]:
    """Six good hazelnut images (fit) and two test images of each kind."""
    root = shared_datasets() / "hazelnut_reduced"
    return sorted((root / "train" / "good").glob("*.png"))[:6]


@pytest.fixture(scope="module")
def nut_tests() -> list[Path]:
    root = shared_datasets() / "hazelnut_reduced" / "test"
    return sorted((root / "good").glob("*.png"))[:2] + sorted((root / "crack").glob("*.png"))[:2]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"variation": {"lamp": 0.1}}, "variation: unknown change 'lamp'"),
        ({"variation": {"brightness": 2}}, "variation.brightness must be in"),
        ({"variation_copies": 0}, "variation_copies must be >= 1"),
        ({"photometric": "auto"}, "photometric must be one of none, standardize"),
        ({"align": "yes"}, "align must be one of none, reference"),
        ({"align_motion": "affine"}, "align_motion must be one of translation, euclidean"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(params: dict, words: str) -> None:
    for cls in (PatchCore, METHODS["padim"], METHODS["spade"]):
        with pytest.raises(InputError, match=words.replace("(", ".").replace("[", ".")):
            cls(**params)


def test_fit_batches_hold_the_changed_copies_deterministically(tiny_root: Path) -> None:
    model = PatchCore(image_size=64, batch_size=4, progress=False, variation=VARIATION, variation_copies=2, seed=3)
    batches = list(model.fit_batches(tiny_root, "test"))
    assert len(batches) == 3 * 2  # 8 images in batches of 4: the originals, then 2 changed copies of each batch
    assert batches[1]["path"][0].endswith("#variation-1") and batches[2]["path"][0].endswith("#variation-2")
    again = list(model.fit_batches(tiny_root, "test"))
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(batches, again, strict=True))
    plain = list(PatchCore(image_size=64, batch_size=4, progress=False).fit_batches(tiny_root, "test"))
    assert torch.equal(plain[0]["image"], batches[0]["image"]) and not torch.equal(
        plain[0]["image"], batches[1]["image"]
    )
    other_seed = list(
        PatchCore(image_size=64, batch_size=4, progress=False, variation=VARIATION, seed=4).fit_batches(tiny_root, "t")
    )
    assert not torch.equal(other_seed[1]["image"], batches[1]["image"])


@pytest.mark.parametrize("method", sorted(TINY_PARAMS))
def test_every_method_fits_and_scores_with_the_settings(method: str, tiny_root: Path, tmp_path: Path) -> None:
    model = METHODS[method](
        image_size=64,
        batch_size=4,
        progress=False,
        variation=VARIATION,
        photometric="standardize",
        **TINY_PARAMS[method],
    ).fit(tiny_root)
    assert isinstance(model.module, Standardized)
    before = model.predict(tiny_root)
    loaded = load_model(model.save(tmp_path / "m.indad"))
    assert loaded.variation == VARIATION and loaded.photometric == "standardize" and loaded.variation_copies == 1
    np.testing.assert_allclose(loaded.predict(tiny_root).scores, before.scores, rtol=1e-5)
    # a brighter copy of the same images scores the same: the standardisation takes the change out
    plain = [Image.open(p).convert("RGB") for p in sorted((tiny_root / "test" / "good").glob("*.png"))]
    brighter = [Image.fromarray((np.asarray(im, dtype=np.float32) * 0.9).astype(np.uint8)) for im in plain]
    np.testing.assert_allclose(model.predict(brighter).scores, model.predict(plain).scores, rtol=0.05)


def test_align_survives_save_and_load_and_exports_refuse_it(
    nuts: list[Path], nut_tests: list[Path], tmp_path: Path
) -> None:
    model = PatchCore(image_size=64, batch_size=4, progress=False, align="reference", align_motion="translation")
    model.fit(nuts)
    assert model.aligner is not None and tuple(model.aligner.reference.shape) == (64, 64)
    before = model.predict(nut_tests)
    path = model.save(tmp_path / "m.indad")
    assert read_header(path)["hparams"]["align"] == "reference"
    loaded = load_model(path)
    assert loaded.aligner is not None and torch.equal(loaded.aligner.reference, model.aligner.reference)
    np.testing.assert_allclose(loaded.predict(nut_tests).scores, before.scores, rtol=1e-5)
    with pytest.raises(InputError, match='align="reference" .* cannot be exported'):
        export_model(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_an_exported_module_standardises(tiny_root: Path, tmp_path: Path) -> None:
    model = PatchCore(image_size=64, batch_size=4, progress=False, photometric="standardize", f_coreset=0.25).fit(
        tiny_root
    )
    module = model.scoring_module(exportable=True).eval()
    images = next(model.iter_batches(tiny_root, "test", "x"))["image"]
    scores, maps = module(images)
    expected_scores, expected_maps = model.score_batch(images)
    np.testing.assert_allclose(scores.numpy(), expected_scores, rtol=1e-4)
    np.testing.assert_allclose(maps.numpy(), expected_maps, rtol=1e-3, atol=1e-4)
    traced = torch.jit.load(str(export_model(model, tmp_path / "m.pt", "torchscript")))
    np.testing.assert_allclose(traced(images)[0].numpy(), expected_scores, rtol=1e-4)


def test_the_ensemble_applies_its_settings_to_every_member(tiny_root: Path) -> None:
    members = [{"method": "patchcore", "image_size": 64}, {"method": "padim", "image_size": 64, "d_reduced": 10}]
    ensemble = Ensemble(members=members, variation={"brightness": 0.1}, photometric="standardize", progress=False)
    batches = list(ensemble.fit_batches(tiny_root, "x"))
    assert [b["member"] for b in batches] == [0, 0, 1, 1]  # 8 images in one batch of 16, and its changed copy
    with pytest.raises(InputError, match=r"members\[0\]: photometric is set on the ensemble"):
        Ensemble(members=[{"method": "patchcore", "photometric": "standardize"}])


def test_configs_carry_the_settings(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("method: patchcore\nvariation: {brightness: 0.15, jpeg: 70}\nphotometric: standardize\n")
    params = load_config(config)["params"]
    model = build_model("patchcore", params, str(config))
    assert model.variation_spec is not None and model.variation_spec.to_dict() == {"brightness": 0.15, "jpeg": 70}
    config.write_text("method: patchcore\nvariation: {brightnes: 0.15}\n")
    with pytest.raises(ConfigError, match="unknown change 'brightnes'"):
        build_model("patchcore", load_config(config)["params"], str(config))


def test_add_normal_adds_the_changed_copies_too(tiny_root: Path) -> None:
    model = METHODS["spade"](image_size=64, batch_size=4, progress=False, k=3, variation={"brightness": 0.1})
    model.fit(tiny_root)
    assert model.to_state().tensors["pooled"].shape[0] == 8 * 2  # the 8 good images and a changed copy of each
    model.add_normal(sorted((tiny_root / "test" / "good").glob("*.png")))
    assert model.to_state().tensors["pooled"].shape[0] == 16 + 2 * 2


def test_model_files_from_before_the_settings_load_with_them_off(tiny_root: Path, tmp_path: Path) -> None:
    from indad.export.model_file import read_tensors, write_model_file

    model = PatchCore(image_size=64, batch_size=4, progress=False, f_coreset=0.25).fit(tiny_root)
    path = model.save(tmp_path / "new.indad")
    metadata = read_header(path)
    for key in ("variation", "variation_copies", "photometric", "align", "align_motion"):
        metadata["hparams"].pop(key)
    old = load_model(write_model_file(tmp_path / "old.indad", read_tensors(path), metadata))
    assert (old.variation, old.photometric, old.align, old.aligner) == (None, "none", "none", None)
    np.testing.assert_allclose(old.predict(tiny_root).scores, model.predict(tiny_root).scores, rtol=1e-5)


def test_ray_fits_refuse_align_before_starting_ray(tiny_root: Path) -> None:
    ray = pytest.importorskip("ray")
    from indad.distributed import RayEngine

    model = PatchCore(image_size=64, batch_size=4, progress=False, align="reference")
    with pytest.raises(InputError, match='align="reference" is not supported on Ray yet'):
        model.fit(tiny_root, engine=RayEngine(progress=False))
    assert not ray.is_initialized() and model.module is None
