"""The ensemble: members fitted on the same images, scores and maps averaged, saved and loaded as one model."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from indad.cli.main import cli
from indad.data import scan_train, split_holdout
from indad.errors import InputError
from indad.methods import Ensemble, ModelState, PatchCore, load_model
from indad.methods.ensemble import EnsembleModule, renormalisation
from tests.helpers import make_layout

# Two methods at two sizes: the reference member (the largest input) is PaDiM at 80 px.
MEMBERS = [
    {"method": "patchcore", "image_size": 64, "f_coreset": 0.25, "search": "exact"},
    {"method": "padim", "image_size": 80, "d_reduced": 20},
]


def tiny_ensemble(root, members=MEMBERS, **kwargs) -> Ensemble:
    return Ensemble(members=members, batch_size=4, progress=False, **kwargs).fit(root, holdout=0.25)


@pytest.fixture(scope="module")
def ensemble(tiny_root) -> Ensemble:
    return tiny_ensemble(tiny_root)


def test_works_at_the_largest_members_size(ensemble, tiny_root):
    assert ensemble.input_size == (80, 80) and ensemble.working_size == (80, 80)
    assert ensemble.backbone is ensemble.member_models[1].backbone
    pred = ensemble.predict(tiny_root)
    assert pred.maps.shape == (len(pred), 80, 80) and ensemble.thresholds is not None
    assert set(ensemble.timings) >= {"fit_s", "m0/features_s", "m1/features_s"}


def test_fused_output_is_the_mean_of_the_members_scoring_alone(ensemble, tiny_root):
    images = torch.cat([b["image"] for b in ensemble.iter_batches(tiny_root, "test", "")])
    fused = ensemble.predict(images)
    scores, maps = [], []
    for member in ensemble.member_models:  # each member alone, on the input resized to its own size
        alone = member.predict(F.interpolate(images, size=member.input_size, mode="bilinear", align_corners=False))
        scores.append(alone.scores)
        up = F.interpolate(torch.from_numpy(alone.maps)[:, None], size=(80, 80), mode="bilinear", align_corners=False)
        maps.append(up[:, 0].numpy())
    np.testing.assert_allclose(fused.scores, np.mean(scores, axis=0), rtol=1e-5)
    np.testing.assert_allclose(fused.maps, np.mean(maps, axis=0), rtol=1e-5, atol=1e-6)


def test_members_of_one_size_fuse_what_each_scores_from_the_files(tiny_root):
    members = [
        {"method": "patchcore", "image_size": 64, "f_coreset": 0.25},
        {"method": "spade", "image_size": 64, "k": 3},
    ]
    model = tiny_ensemble(tiny_root, members)
    alone = [m.predict(tiny_root) for m in model.member_models]
    fused = model.predict(tiny_root)
    np.testing.assert_allclose(fused.scores, (alone[0].scores + alone[1].scores) / 2, rtol=1e-6)
    np.testing.assert_allclose(fused.maps, (alone[0].maps + alone[1].maps) / 2, rtol=1e-6, atol=1e-6)


def test_each_member_is_fitted_on_the_images_at_its_own_size(ensemble, tiny_root):
    patchcore = ensemble.member_models[0]
    assert isinstance(patchcore, PatchCore)
    kept, _ = split_holdout(tiny_root, 0.25, 0)  # what fit(holdout=0.25) fitted on
    alone = PatchCore(image_size=64, f_coreset=0.25, search="exact", progress=False).fit(kept)
    assert alone.memory_bank is not None and torch.equal(alone.memory_bank, patchcore.memory_bank)


def test_save_and_load_give_identical_scores(ensemble, tiny_root, tmp_path):
    loaded = load_model(ensemble.save(tmp_path / "e.indad"))
    assert isinstance(loaded, Ensemble) and loaded.hparams() == ensemble.hparams() | {"device": "cpu"}
    assert loaded.thresholds == ensemble.thresholds
    a, b = ensemble.predict(tiny_root), loaded.predict(tiny_root)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.maps, b.maps)


def test_state_round_trip_through_the_protocol(ensemble, tiny_root):
    state = ensemble.to_state()
    assert state.tensors and all(name.split("/")[0] in ("m0", "m1") for name in state.tensors)
    assert [m["method"] for m in state.meta["members"]] == ["patchcore", "padim"]
    twin = Ensemble(**ensemble.hparams())
    twin.from_state(ModelState(dict(state.tensors), dict(state.meta)))
    twin.rebuild()
    np.testing.assert_array_equal(twin.predict(tiny_root).scores, ensemble.predict(tiny_root).scores)


def test_one_shard_fit_is_partial_then_merge(ensemble, tiny_root):
    model = Ensemble(**ensemble.hparams())
    model.merge_states([model.partial_fit_state(model.fit_batches(tiny_root, ""), 1)])
    model.rebuild()
    again = Ensemble(**ensemble.hparams()).fit(tiny_root)
    np.testing.assert_array_equal(model.predict(tiny_root).scores, again.predict(tiny_root).scores)


def test_add_normal_grows_every_member_and_keeps_the_thresholds(tmp_path):
    root = make_layout(tmp_path / "ds", n_train=10, size=(64, 64))
    paths = [s.path for s in scan_train(root)]
    members = [{"method": "patchcore", "image_size": 64, "f_coreset": 0.25}, {"method": "spade", "image_size": 48}]
    model = Ensemble(members=members, progress=False).fit(paths[:6])
    model.calibrate(paths[6:8])
    thresholds, bank, pooled = model.thresholds, model.member_models[0].memory_bank, model.member_models[1].pooled
    before = model.predict(root).scores
    model.add_normal(paths[6:])
    assert model.thresholds == thresholds
    assert len(model.member_models[0].memory_bank) > len(bank)
    assert len(model.member_models[1].pooled) == len(pooled) + 4
    after = model.predict(root)
    assert not np.array_equal(after.scores, before)
    alone = PatchCore(image_size=64, f_coreset=0.25, progress=False).fit(paths[:6]).add_normal(paths[6:])
    assert alone.memory_bank is not None and torch.equal(alone.memory_bank, model.member_models[0].memory_bank)


def test_a_region_of_interest_applies_to_the_fused_map(ensemble, tiny_root, tmp_path):
    model = load_model(ensemble.save(tmp_path / "e.indad"))
    mask = np.zeros((80, 80), dtype=bool)
    mask[:, :40] = True
    model.set_roi_mask(torch.from_numpy(mask))
    model.rebuild()
    pred, full = model.predict(tiny_root), ensemble.predict(tiny_root)
    assert (pred.maps[:, :, 40:] == 0).all()
    np.testing.assert_array_equal(pred.maps[:, :, :40], full.maps[:, :, :40])
    np.testing.assert_array_equal(pred.scores, pred.maps.max(axis=(1, 2)))


def test_fit_refuses_a_tensor(ensemble):
    with pytest.raises(InputError, match="not a Tensor"):
        Ensemble(members=MEMBERS, progress=False).fit(torch.zeros(2, 3, 80, 80))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"members": [{"method": "knn"}]}, r"members\[0\]: unknown method 'knn'"),
        ({"members": [{"method": "patchcore"}, {"method": "ensemble"}]}, r"members\[1\]: an ensemble cannot be"),
        ({"members": [{"method": "patchcore", "tile": 128}]}, r"members\[0\]: tile=128 is not supported"),
        ({"members": [{"method": "patchcore", "roi": "roi.png"}]}, r"roi='roi.png'.*set the region of interest on"),
        ({"members": [{"method": "patchcore", "crop_size": 224}]}, r"crop_size=224 is not supported"),
        ({"members": [{"method": "patchcore", "image_size": "native"}]}, r"image_size='native' is not supported"),
        ({"members": [{"method": "patchcore", "device": "cpu"}]}, r"members\[0\]: device is not set per member"),
        ({"members": [{"method": "padim", "f_coreset": 0.1}]}, r"members\[0\]: unknown key\(s\) 'f_coreset' for padim"),
        ({"members": [{"method": "patchcore", "f_coreset": 2}]}, r"members\[0\]: f_coreset must be in \(0, 1\]"),
        ({"members": ["patchcore"]}, r"members\[0\] must be a mapping with a 'method' key, got 'patchcore'"),
        ({"members": []}, r"members must be a non-empty list"),
        ({"members": [{"method": "patchcore"}, {"method": "padim", "resize": "fit"}]}, r"must share resize"),
        ({"fusion": "max"}, r"fusion must be one of mean, got 'max'"),
        ({"image_size": 128}, r"image_size=128 differs from its reference member's"),
        ({"blur_sigma": 2.0}, r"blur_sigma=2.0: not an ensemble setting: set it in its members"),
        ({"weights": "w.pth"}, r"weights='w.pth': an ensemble's members take their weights from"),
        ({"tile": 128}, r"tiles are not supported in an ensemble"),
    ],
    ids=lambda v: "-".join(f"{k}={v[k]}" for k in v) if isinstance(v, dict) else "",
)
def test_bad_settings_raise_input_errors_naming_the_value(kwargs, match):
    with pytest.raises(InputError, match=match):
        Ensemble(progress=False, **kwargs)


def test_defaults_are_lite0_at_256_and_320():
    model = Ensemble(progress=False)
    assert [(m.method, m.backbone_name, m.input_size) for m in model.member_models] == [
        ("patchcore", "tf_efficientnet_lite0", (256, 256)),
        ("patchcore", "tf_efficientnet_lite0", (320, 320)),
    ]
    assert model.input_size == (320, 320) and model.fusion == "mean"


def test_a_member_of_another_normalisation_gets_its_own():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's; the ensemble's input is lite0's
    module = EnsembleModule(
        [torch.nn.Identity()], [(32, 32)], (32, 32), [renormalisation(((0.5,) * 3,) * 2, (mean, std))]
    )
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    expected = (x * 0.5 + 0.5 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    torch.testing.assert_close(module.member_input(0, x), expected)


def test_cli_fits_an_ensemble_from_a_config(tiny_root, tmp_path):
    config = tmp_path / "ens.yaml"
    config.write_text(
        "method: ensemble\nmembers:\n  - {method: patchcore, image_size: 64}\n  - {method: spade, image_size: 48}\n"
    )
    out = tmp_path / "m.indad"
    result = CliRunner().invoke(cli, ["fit", "ensemble", str(tiny_root), "-o", str(out), "-c", str(config), "-q"])
    assert result.exit_code == 0, result.output
    assert [m.input_size for m in load_model(out).member_models] == [(64, 64), (48, 48)]
    scored = CliRunner().invoke(cli, ["predict", str(out), str(tiny_root / "test" / "good"), "-o", str(tmp_path / "p")])
    assert scored.exit_code == 0, scored.output
    assert len(list((tmp_path / "p" / "heatmaps").rglob("*.png"))) == 2
    bad = CliRunner().invoke(cli, ["fit", "ensemble", str(tiny_root), "-o", str(out), "--image-size", "96"])
    assert bad.exit_code == 1 and "image_size=96 differs from its reference member's" in bad.output
