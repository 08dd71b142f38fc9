"""Growing a fitted model with more good images, against a full refit on the union."""

import numpy as np
import pytest
import torch

from indad.data import AnomalyDataset, make_loader, scan_test, scan_train
from indad.methods import SPADE, PaDiM, PatchCore
from tests.helpers import MTD_VARIANTS, make_layout, mtd_folder
from tests.memory.reference import coverage_radius


@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    root = make_layout(tmp_path_factory.mktemp("grow") / "ds", n_train=10, size=(64, 64))
    paths = [s.path for s in scan_train(root)]
    return root, paths[:6], paths[6:]


def test_padim_matches_a_refit_exactly(halves):
    root, first, second = halves
    full = PaDiM(image_size=64, d_reduced=20, progress=False).fit(first + second)
    grown = PaDiM(image_size=64, d_reduced=20, batch_size=4, progress=False).fit(first).add_normal(second)
    assert grown.accumulator.count == 10
    torch.testing.assert_close(grown.accumulator.sum, full.accumulator.sum, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(grown.accumulator.outer, full.accumulator.outer, rtol=1e-12, atol=1e-9)
    a, b = full.predict(root), grown.predict(root)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
    np.testing.assert_allclose(a.maps, b.maps, rtol=1e-4, atol=1e-4)


def test_spade_appends(halves):
    root, first, second = halves
    full = SPADE(image_size=64, k=3, progress=False).fit(first + second)
    grown = SPADE(image_size=64, k=3, progress=False).fit(first).add_normal(second)
    assert torch.equal(full.pooled, grown.pooled)
    assert all(torch.equal(a, b) for a, b in zip(full.pyramids, grown.pyramids, strict=True))
    np.testing.assert_array_equal(full.predict(root).scores, grown.predict(root).scores)


def test_patchcore_extends_its_bank(halves):
    _, first, second = halves
    model = PatchCore(image_size=64, f_coreset=0.1, progress=False).fit(first)
    old_bank = model.memory_bank.clone()
    added_before, fitted_before = model.predict(second), model.predict(first)
    with torch.inference_mode():
        patches = model.embed(next(iter(make_loader(second, model.preprocess, "train", len(second))))["image"])
    model.add_normal(second)
    new_rows = round(0.1 * 4 * 64)  # 4 images of 8 x 8 patches
    assert model.memory_bank.shape[0] == old_bank.shape[0] + new_rows
    assert torch.equal(model.memory_bank[: old_bank.shape[0]], old_bank)
    # Every added image is now (nearly) in the bank: its patches' distances dropped.
    added, fitted = model.predict(second), model.predict(first)
    assert np.all(np.isfinite(added.scores))
    assert coverage_radius(patches, model.memory_bank) < coverage_radius(patches, old_bank)
    assert np.all(added.scores < added_before.scores), (added_before.scores, added.scores)
    assert np.all(added.maps.mean(axis=(1, 2)) < added_before.maps.mean(axis=(1, 2)))
    # ... down to the scores of the images fitted on (a larger bank never raises a distance).
    assert added.scores.mean() < 1.05 * fitted.scores.mean(), (added.scores, fitted.scores)
    assert np.all(fitted.scores <= fitted_before.scores + 1e-5)


def test_add_normal_needs_a_fitted_model(halves):
    from indad.methods import NotFittedError

    with pytest.raises(NotFittedError):
        PaDiM(image_size=64, d_reduced=20, progress=False).add_normal(halves[2])


@pytest.mark.slow  # minutes even on the MTD subset; test_patchcore_extends_its_bank runs in make test
@pytest.mark.parametrize("variant", MTD_VARIANTS)
def test_patchcore_grown_on_mtd_scores_like_a_refit(request, variant):
    """160 MTD training images (100 of the subset): fit on half then add the other half, against a fit on all
    (scored on every other test image of MTD, every test image of the subset). Banks of 1% of 80 + 80 (50 + 50)
    images' patches: the same size as 1% of 160 (100)."""
    mtd = mtd_folder(request, variant)
    paths = [s.path for s in scan_train(mtd)][: 160 if variant == "full" else 100]
    half = len(paths) // 2
    full = PatchCore(progress=False).fit(paths)
    grown = PatchCore(progress=False).fit(paths[:half]).add_normal(paths[half:])
    assert grown.memory_bank.shape[0] == full.memory_bank.shape[0]
    test = AnomalyDataset(scan_test(mtd)[:: 2 if variant == "full" else 1], full.preprocess)
    a, b = full.evaluate(test), grown.evaluate(test)
    print({k: (round(a[k], 4), round(b[k], 4)) for k in ("image_auroc", "pixel_auroc")})
    assert abs(a["image_auroc"] - b["image_auroc"]) <= 0.01
    assert abs(a["pixel_auroc"] - b["pixel_auroc"]) <= 0.01
