"""The web app's computations, without Streamlit."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from indad.app import choices, gallery, inputs, outcomes
from indad.errors import InputError
from indad.files import csv_text
from indad.progress import ProgressEvent
from indad.thresholds import Thresholds
from tests.helpers import make_layout


def png(size=(32, 24), mode="RGB", value=128) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, value if mode != "RGB" else (value, value, value)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_backbones_offline_first_and_the_rest_marked():
    offered = choices.backbone_choices()
    offline = [c for c in offered if not c.endswith(choices.NEEDS_INTERNET)]
    assert offered[: len(offline)] == offline and offline[0] == "tf_efficientnet_lite0"
    assert choices.backbone_name("wide_resnet50_2" + choices.NEEDS_INTERNET) == "wide_resnet50_2"


@pytest.mark.parametrize("method", ["patchcore", "padim", "spade"])
def test_every_offered_parameter_has_a_config_default_in_range(method):
    defaults = choices.default_params(method)
    for spec in choices.param_specs(method):
        assert spec.low <= defaults[spec.name] <= spec.high, spec.name


def test_find_datasets_lists_layout_folders_only(tmp_path):
    make_layout(tmp_path / "b_set", n_train=3)
    make_layout(tmp_path / "a_set", n_train=2)
    (tmp_path / "not_a_dataset").mkdir()
    (tmp_path / "empty" / "train" / "good").mkdir(parents=True)
    found = inputs.find_datasets(tmp_path)
    assert [d.path.name for d in found] == ["a_set", "b_set"]
    assert (found[1].n_train, found[1].n_test) == (3, 4)
    assert found[1].summary == "3 good images to train, 4 to test"
    assert inputs.find_datasets(tmp_path / "missing") == []


def test_uploads_not_an_image_and_too_few_are_errors_naming_the_file():
    check = inputs.read_uploads([("a.png", png()), ("notes.txt", b"hello"), ("b.png", png()[:40])], "good", 3)
    assert not check.ok and check.names == ["a.png"]
    assert any("notes.txt" in e and "not an image" in e for e in check.errors)
    assert any("b.png" in e for e in check.errors)
    assert any("At least 3 good images" in e and "1 readable was" in e for e in check.errors)


def test_uploads_mixed_sizes_and_modes_warn_naming_the_odd_ones():
    files = [("a.png", png()), ("b.png", png()), ("c.png", png((50, 50))), ("d.png", png(mode="L"))]
    check = inputs.read_uploads(files, "good", 3)
    assert check.ok and len(check.images) == 4
    assert all(im.mode == "RGB" for im in check.images)
    size, mode = check.warnings
    assert "sizes" in size and "c.png (50x50)" in size and "3 are 32x24" in size
    assert "colour modes" in mode and "d.png (L)" in mode
    assert inputs.read_uploads(files[:2], "good", 2).warnings == []


def test_throttled_progress_skips_frequent_events_but_not_ends():
    shown, now = [], [0.0]
    progress = inputs.ThrottledProgress(lambda f, t: shown.append((f, t)), interval=1.0, clock=lambda: now[0])
    for done in range(5):
        progress(ProgressEvent("coreset", done, 4))
    assert shown == [(0.0, "coreset: 0/4"), (1.0, "coreset: 4/4")]
    now[0] = 2.0
    progress(ProgressEvent("download", 7, None))
    assert shown[-1] == (0.0, "download: 7")


def _results(labels=True) -> outcomes.RunResults:
    scores = np.array([0.1, 0.9, 0.5, 0.3])
    maps = np.stack([np.full((8, 8), s, dtype=np.float32) for s in scores])
    images = [Image.new("RGB", (16, 16)) for _ in scores]
    if not labels:
        return outcomes.RunResults(["a", "b", "c", "d"], scores, maps, images)
    return outcomes.RunResults(
        ["good/a", "crack/b", "cut/c", "good/d"],
        scores,
        maps,
        images,
        labels=np.array([0, 1, 1, 0]),
        defects=["good", "crack", "cut", "good"],
        masks=[None, None, None, None],
        metrics={"f1_threshold": 0.5},
    )


def test_decisions_count_and_confusion():
    r = _results()
    d = outcomes.decisions(r.scores, 0.4, r.labels)
    assert (d.flagged, d.tp, d.fp, d.fn, d.tn) == (2, 2, 0, 0, 2) and d.precision == d.recall == 1.0
    d = outcomes.decisions(r.scores, 0.2, r.labels)
    assert (d.tp, d.fp) == (2, 1) and d.precision == pytest.approx(2 / 3)
    assert outcomes.decisions(r.scores, 0.95).flagged == 0 and outcomes.decisions(r.scores, 0.95).tp is None


def test_default_threshold_prefers_calibration_then_f1_then_median():
    r = _results()
    assert outcomes.default_threshold(r, Thresholds(0.7, 0.6, "good_quantile", 0.99, 5)) == 0.7
    assert outcomes.default_threshold(r, None) == 0.5
    assert outcomes.default_threshold(_results(labels=False), None) == pytest.approx(0.4)


def test_histogram_counts_every_image_once_per_kind():
    rows = outcomes.histogram_rows(_results(), bins=4)
    assert sum(r["images"] for r in rows if r["kind"] == "good") == 2
    assert sum(r["images"] for r in rows if r["kind"] == "defective") == 2
    assert {r["kind"] for r in outcomes.histogram_rows(_results(labels=False))} == {"unlabelled"}


def test_gallery_filters_by_defect_and_sorts():
    r = _results()
    assert outcomes.gallery_order(r) == [1, 2, 3, 0]
    assert outcomes.gallery_order(r, sort="score, lowest first") == [0, 3, 2, 1]
    assert outcomes.gallery_order(r, ["crack", "cut"], "name") == [1, 2]
    assert outcomes.gallery_order(r, []) == []
    with pytest.raises(InputError, match="unknown sort"):
        outcomes.gallery_order(r, sort="random")


def test_colour_range_and_gallery_pictures():
    from indad.data import Preprocess

    r = _results()
    assert outcomes.auto_colour_range(r.maps) == pytest.approx((0.1, 0.9))
    assert outcomes.auto_colour_range(np.zeros((2, 4, 4))) == (0.0, 1.0)
    pre = Preprocess((8, 8), None, (0.5,) * 3, (0.5,) * 3)
    pics = gallery.gallery_pictures(r, 1, pre, (0.1, 0.9), pixel_threshold=0.5)
    assert pics.image.size == pics.heatmap.size == pics.overlay.size == (16, 16)
    assert np.asarray(pics.heatmap)[0, 0].tolist() == [128, 0, 0]  # top of the jet scale: dark red
    assert pics.mask is None  # defective without a mask file: unknown
    low = gallery.gallery_pictures(r, 0, pre, (0.1, 0.9))
    assert np.asarray(low.heatmap)[0, 0].tolist() == [0, 0, 128]  # bottom: dark blue
    assert not np.asarray(low.mask).any()  # good image: an empty mask


def test_results_from_evaluation_keeps_masks_by_path(tmp_path):
    from indad.methods import PatchCore

    root = make_layout(tmp_path / "ds", n_train=4, size=(64, 64))
    model = PatchCore(image_size=64, batch_size=4, f_coreset=0.5, progress=False).fit(root)
    r = outcomes.results_from_evaluation(model.evaluate(root, keep_maps=True), root)
    assert r.maps.shape == (len(r.names), 64, 64) and r.labelled
    bad = r.defects.index("scratch")
    assert r.mask(bad).shape == (64, 64) and r.mask(bad).any()
    assert r.names[bad].startswith("scratch/")
    rows = outcomes.metrics_rows(r.metrics)
    assert rows[0]["metric"] == "Image ROC AUC" and rows[-1]["value"] == "4 (2)"


def test_score_rows_csv_and_model_file_with_moved_threshold(tmp_path, tiny_model):
    import indad

    t = tiny_model.thresholds
    moved = gallery.with_image_threshold(t, t.image * 2)
    assert (moved.image, moved.pixel, moved.rule) == (t.image * 2, t.pixel, "manual")
    assert gallery.with_image_threshold(None, 1.0) is None
    rows = gallery.score_rows(["x.png", "y.png"], np.array([t.image, t.image / 2]), t)
    assert [r["decision"] for r in rows] == ["defective", "good"] and rows[0]["normalized score"] == 1.0
    assert csv_text(rows).splitlines()[0] == "image,score,normalized score,decision"
    path = tmp_path / "m.indad"
    path.write_bytes(gallery.model_file_bytes(tiny_model, moved))
    assert indad.load(path).thresholds == moved
    assert tiny_model.thresholds == t  # the fitted model keeps its own


def test_threshold_origin_says_where_the_slider_starts():
    t = Thresholds(0.7, 0.6, "good_quantile", 0.99, 5)
    line = outcomes.threshold_origin(t, {"f1_threshold": 0.5})
    assert "0.7000" in line and "0.99 quantile" in line and "5 good images" in line and "0.5000" in line
    assert "best F1" in outcomes.threshold_origin(None, {"f1_threshold": 0.5})
    assert "median" in outcomes.threshold_origin(None, None)


def test_an_unknown_method_is_a_config_error():
    from indad.config import ConfigError

    with pytest.raises(ConfigError, match="unknown method 'knn'"):
        choices.param_specs("knn")


def test_shape_params_tiles_and_resize_and_their_errors():
    from indad.errors import InputError

    assert choices.shape_params(256, "fit") == {"resize": "fit", "tile": None}
    assert choices.shape_params(64, "stretch", 32, 8) == {"resize": "stretch", "tile": {"size": 32, "overlap": 8}}
    with pytest.raises(InputError, match="a tile of 80 pixels does not fit in the working size's 64"):
        choices.shape_params(64, "stretch", 80)
    with pytest.raises(InputError, match="overlap"):
        choices.shape_params(64, "stretch", 32, 32)
    with pytest.raises(InputError, match="resize must be one of stretch, fit"):
        choices.shape_params(64, "crop")


def _roi_bytes(size=(48, 40), left=24) -> bytes:
    arr = np.zeros((size[1], size[0]), dtype=np.uint8)
    arr[:, :left] = 255
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="PNG")
    return buffer.getvalue()


def test_roi_upload_read_and_errors_name_the_file():
    from indad.errors import InputError

    mask = inputs.read_roi_upload("roi.png", _roi_bytes())
    assert mask.shape == (40, 48) and mask[:, :24].all() and not mask[:, 24:].any()
    with pytest.raises(InputError, match=r"roi\.png inspects nothing"):
        inputs.read_roi_upload("roi.png", _roi_bytes(left=0))
    with pytest.raises(InputError, match=r"cannot read image notes\.txt"):
        inputs.read_roi_upload("notes.txt", b"hello")


def test_tiles_and_an_uploaded_roi_reach_the_fitted_model(tmp_path):
    from indad.config import build_model

    root = make_layout(tmp_path / "ds", n_train=3)  # 48x40 images
    params = {"image_size": 64, "batch_size": 8, "f_coreset": 0.5, "progress": False}
    model = build_model("patchcore", params | choices.shape_params(64, "stretch", 32, 8))
    inputs.apply_roi(model, inputs.read_roi_upload("roi.png", _roi_bytes((96, 80), 48)), "roi.png")
    model.fit(root)
    assert model.tile_grid is not None and model.tile_grid.count == 9 and model.hparams()["roi"] == "roi.png"
    assert choices.shape_summary(model) == "stretch into 64x64, tiles of 32x32 (overlap 8), a region of interest"
    pred = model.predict(root / "test" / "scratch")
    assert pred.maps[:, :, :32].any() and not pred.maps[:, :, 32:].any()  # nothing scores outside the ROI
    results = outcomes.RunResults(["a", "b"], pred.scores, pred.maps, [root / "test" / "scratch" / "000.png"] * 2)
    inspected = inputs.roi_on_original(model.roi_mask, model.preprocess, results.size(0))
    assert inspected.shape == (40, 48) and inspected[:, :24].all() and not inspected[:, 24:].any()
    pics = gallery.gallery_pictures(results, 0, model.preprocess, (0.0, 1.0), roi=model.roi_mask)
    plain = gallery.gallery_pictures(results, 0, model.preprocess, (0.0, 1.0))
    dimmed, bright = np.asarray(pics.image, dtype=float), np.asarray(plain.image, dtype=float)
    assert np.allclose(dimmed[:, 26:], np.round(bright[:, 26:] * 0.4), atol=1)  # outside dimmed
    assert np.array_equal(dimmed[:, :20], bright[:, :20])  # inside untouched
    assert (dimmed[:, 23] == gallery.ROI_OUTLINE).all()  # its edge drawn


def _two_blobs() -> outcomes.RunResults:
    amap = np.zeros((16, 16), dtype=np.float32)
    amap[2:4, 2:5] = 1.0  # 6 px at the working size
    amap[10:14, 8:14] = 0.8  # 24 px
    images = [Image.new("RGB", (32, 32)), Image.new("RGB", (32, 32))]
    return outcomes.RunResults(["blobs", "clean"], np.array([0.2, 0.1]), np.stack([amap, amap * 0]), images)


def test_regions_are_find_regions_on_the_original_map_and_fill_the_table():
    from indad.data import Preprocess
    from indad.inference import map_to_original
    from indad.regions import find_regions

    r, pre = _two_blobs(), Preprocess((16, 16), None, (0.5,) * 3, (0.5,) * 3)
    large = gallery.image_regions(r, pre, 0.5, min_area=30)
    assert large == [find_regions(map_to_original(r.maps[0], pre, (32, 32)), 0.5, 30), []]
    assert len(large[0]) == 1 and large[0][0].area >= 30  # 24 px at the working size: areas in original pixels
    regions = gallery.image_regions(r, pre, 0.5)
    rows = gallery.region_rows(regions[0])
    assert [row["area (px)"] for row in rows] == [x.area for x in regions[0]]
    assert [(row["x0"], row["y0"], row["x1"], row["y1"]) for row in rows] == [x.bbox for x in regions[0]]
    assert [(row["centroid x"], row["centroid y"]) for row in rows] == [x.centroid for x in regions[0]]
    assert [row["peak"] for row in rows] == pytest.approx([1.0, 0.8]) and rows[0]["region"] == 1
    assert gallery.regions_summary(regions[0]).startswith("2 regions, largest")
    assert gallery.regions_summary([]) == "no region"
    boxed = np.asarray(gallery.draw_boxes(Image.new("RGB", (32, 32)), regions[0][:1]))
    x0, y0, x1, y1 = regions[0][0].bbox
    assert boxed[y0, x0].tolist() == list(gallery.BOX_COLOUR) and boxed[y1 - 1, x1 - 1].tolist() == list(
        gallery.BOX_COLOUR
    )
    assert not boxed[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].any()  # only the outline


def test_the_decision_rule_flips_verdicts_counts_and_csv_rows():
    from indad.data import Preprocess
    from indad.thresholds import Decision

    r, pre = _two_blobs(), Preprocess((16, 16), None, (0.5,) * 3, (0.5,) * 3)
    t = gallery.thresholds_at(None, image=0.5, pixel=0.5)
    assert (t.image, t.pixel, t.rule, t.n_images) == (0.5, 0.5, "manual", 0)
    regions = gallery.image_regions(r, pre, t.pixel)
    by_score = gallery.verdicts(r.scores, regions, Decision("score"), t)
    by_regions = gallery.verdicts(r.scores, regions, Decision("regions"), t)
    assert by_score.tolist() == [False, False] and by_regions.tolist() == [True, False]
    large = gallery.image_regions(r, pre, t.pixel, min_area=1000)
    assert gallery.verdicts(r.scores, large, Decision("regions", 1000), t).tolist() == [False, False]
    counts = outcomes.decision_counts(by_regions, np.array([1, 0]))
    assert (counts.flagged, counts.tp, counts.fp, counts.fn, counts.tn) == (1, 1, 0, 0, 1)
    rows = gallery.score_rows(r.names, r.scores, t, regions, Decision("regions"))
    assert [row["decision"] for row in rows] == ["defective", "good"]
    assert [row["regions"] for row in rows] == [2, 0] and rows[0]["largest area"] == max(x.area for x in regions[0])
    assert csv_text(rows).splitlines()[0] == "image,score,normalized score,decision,regions,largest area"
    assert [row["decision"] for row in gallery.score_rows(r.names, r.scores, t, regions)] == ["good", "good"]
    moved = gallery.with_image_threshold(Thresholds(0.7, 0.6, "good_quantile", 0.99, 5), 0.5, 0.25)
    assert (moved.image, moved.pixel, moved.n_images) == (0.5, 0.25, 5)
