"""Each flow of the web app through Streamlit's AppTest: the page script runs as in a browser session."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from tests.helpers import REPO, make_layout

TIMEOUT = 300


def app(data_root: Path | str) -> AppTest:
    os.environ["INDAD_DATA_DIR"] = str(data_root)  # read by the page's "Data root" default
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def files(paths) -> list[tuple[str, bytes, str]]:
    return [(Path(p).name, Path(p).read_bytes(), "image/png") for p in paths]


def captions(at: AppTest, caption: str) -> int:
    return sum(c == caption for im in at.image for c in im.captions)


def no_failure(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture
def restore_env():
    before = os.environ.get("INDAD_DATA_DIR")
    yield
    if before is None:
        os.environ.pop("INDAD_DATA_DIR", None)
    else:
        os.environ["INDAD_DATA_DIR"] = before


def test_dataset_on_disk_train_inspect_download_and_score(datasets_root, hazelnut, restore_env):
    at = app(datasets_root)
    assert at.sidebar.selectbox(key="dataset").value.path.name == "hazelnut_reduced"
    assert at.sidebar.caption[0].value == "50 good images to train, 10 to test"
    assert at.sidebar.selectbox(key="method").value == "patchcore"
    assert at.sidebar.number_input(key="patchcore_f_coreset").value == 0.01  # the shipped config's default
    at.sidebar.button(key="start").click().run()
    no_failure(at)
    assert at.success[0].value.startswith("PatchCore on hazelnut_reduced")
    table = at.dataframe[0].value
    assert float(table.set_index("metric").loc["Image ROC AUC", "value"]) > 0.9
    assert at.get("vega_lite_chart"), "no score histogram"
    assert captions(at, "anomaly map") == 6 and captions(at, "ground truth") == 6  # first gallery page

    # The threshold slider moves the decisions.
    slider = at.slider(key="threshold_1")
    flagged = at.metric[0].value
    slider.set_value(slider.max).run()
    assert at.metric[0].value == "0 of 10" != flagged

    # Filter by defect type, sort, manual colour range.
    at.multiselect(key="defects_1").set_value(["crack"]).run()
    assert captions(at, "anomaly map") == 2
    bold = [m.value for m in at.markdown if m.value.startswith("**crack/")]
    assert len(bold) == 2
    at.selectbox(key="sort").set_value("name").run()
    names = [m.value.split("**")[1] for m in at.markdown if m.value.startswith("**crack/")]
    assert names == sorted(names)
    at.toggle(key="manual_colours").set_value(True).run()
    lo, hi = at.slider(key="colours_1").value
    at.slider(key="colours_1").set_value((lo, (lo + hi) / 2)).run()
    no_failure(at)
    assert at.get("download_button")

    # The trained model scores uploaded images in the second tab.
    test_images = (
        sorted((hazelnut / "test" / "good").iterdir())[:1] + sorted((hazelnut / "test" / "hole").iterdir())[:1]
    )
    at.file_uploader(key="score_files").set_value(files(test_images)).run()
    no_failure(at)
    rows = at.dataframe[-1].value  # the score tab comes last
    assert list(rows["image"]) == [p.name for p in test_images]
    assert rows["score"].iloc[1] > rows["score"].iloc[0]  # the hole scores above the good one
    assert set(rows["decision"]) <= {"good", "defective"}


def test_upload_flow_trains_and_scores_test_uploads(hazelnut, tmp_path, restore_env):
    at = app(tmp_path)
    at.sidebar.radio(key="source").set_value("Upload images").run()
    good = sorted((hazelnut / "train" / "good").iterdir())[:4]
    test = sorted((hazelnut / "test" / "crack").iterdir())[:2]
    at.sidebar.file_uploader(key="good_files").set_value(files(good))
    at.sidebar.file_uploader(key="test_files").set_value(files(test))
    at.sidebar.number_input(key="patchcore_image_size").set_value(128)
    at.sidebar.button(key="start").click().run()
    no_failure(at)
    assert at.success[0].value.startswith("PatchCore on 4 uploaded images")
    assert not any(h.value == "Metrics" for h in at.subheader)  # no labels, no metrics table
    assert captions(at, "anomaly map") == 2 and captions(at, "ground truth") == 0
    assert any("no thresholds" in c.value for c in at.caption)  # 4 images: none held out


def _png(size, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).convert(mode).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def test_bad_uploads_get_clear_messages_and_no_training(tmp_path, restore_env):
    at = app(tmp_path)
    at.sidebar.radio(key="source").set_value("Upload images").run()
    at.sidebar.file_uploader(key="good_files").set_value(
        [("a.png", _png((32, 32)), "image/png"), ("report.pdf", b"%PDF-1.4 not an image", "application/pdf")]
    )
    at.sidebar.button(key="start").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "report.pdf (good): not an image" in errors and "At least 3 good images" in errors
    assert not at.success

    mixed = [
        ("a.png", _png((32, 32)), "image/png"),
        ("b.png", _png((32, 32)), "image/png"),
        ("c.png", _png((32, 32)), "image/png"),
        ("big.png", _png((48, 40)), "image/png"),
        ("gray.png", _png((32, 32), "L"), "image/png"),
    ]
    at.sidebar.file_uploader(key="good_files").set_value(mixed)
    at.sidebar.number_input(key="patchcore_image_size").set_value(64)
    at.sidebar.button(key="start").click().run()
    no_failure(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "big.png (48x40)" in warnings and "gray.png (L)" in warnings
    assert at.success, "mixed sizes and modes still train, with the warning"


def test_dataset_errors_are_shown_in_the_page(tmp_path, restore_env):
    at = app(tmp_path)  # no dataset there
    assert any("No dataset in MVTec AD layout" in w.value for w in at.sidebar.warning)
    at.sidebar.button(key="start").click().run()
    assert not at.exception and "no dataset to train on" in at.error[0].value

    broken = make_layout(tmp_path / "broken", n_train=3)
    (broken / "train" / "good" / "003.png").write_bytes(b"not a png")
    at = app(tmp_path)
    at.sidebar.number_input(key="patchcore_image_size").set_value(64)
    at.sidebar.button(key="start").click().run()
    assert not at.exception and "003.png" in at.error[0].value

    (broken / "train" / "good" / "003.png").unlink()
    at.sidebar.selectbox(key="backbone").set_value("resnet18 (needs internet)")
    at.sidebar.button(key="start").click().run()
    assert not at.exception
    if not at.error:
        pytest.skip("resnet18's weights are cached or downloadable here")
    assert "resnet18" in at.error[0].value


def test_mvtec_class_download_failure_is_a_message(tmp_path, restore_env, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    at = app(tmp_path)
    at.sidebar.radio(key="source").set_value("Download an MVTec AD class").run()
    at.sidebar.selectbox(key="mvtec_class").set_value("bottle")
    at.sidebar.button(key="start").click().run()
    assert not at.exception
    assert "download of" in at.error[0].value and "failed" in at.error[0].value
    assert not (tmp_path / "bottle").exists()


def test_saved_model_scores_uploads_and_bad_model_file_is_refused(tiny_model, hazelnut, tmp_path, restore_env):
    path = tiny_model.save(tmp_path / "tiny.indad")
    at = app(tmp_path)
    assert at.radio(key="score_model_source_0").value == "A saved model file"  # nothing trained yet
    at.file_uploader(key="model_file").set_value(("broken.indad", b"garbage", "application/octet-stream")).run()
    assert not at.exception and "broken.indad" in at.error[0].value

    at.file_uploader(key="model_file").set_value((path.name, path.read_bytes(), "application/octet-stream")).run()
    no_failure(at)
    images = sorted((hazelnut / "test" / "good").iterdir())[:2]
    upload = [*files(images), ("notes.txt", b"text", "text/plain")]
    at.file_uploader(key="score_files").set_value(upload).run()
    assert not at.exception
    assert "notes.txt (scored): not an image" in at.error[0].value  # reported, the images still scored
    rows = at.dataframe[0].value
    assert list(rows["image"]) == [p.name for p in images]
    expected = tiny_model.predict(images).scores
    assert np.allclose(rows["score"], expected, rtol=1e-5)
    assert captions(at, "anomaly map") == 2


def _roi_png(size=(96, 80)) -> bytes:
    """A region-of-interest picture: the left half white (inspect), the right half black."""
    arr = np.zeros((size[1], size[0]), dtype=np.uint8)
    arr[:, : size[0] // 2] = 255
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="PNG")
    return buffer.getvalue()


def test_tiles_fit_and_roi_reach_the_model_and_regions_decide(tmp_path, restore_env):
    from indad.inference import map_to_original
    from indad.regions import find_regions

    make_layout(tmp_path / "tiny", n_train=4)  # 48x40 images, 4 test images
    at = app(tmp_path)
    at.sidebar.number_input(key="patchcore_image_size").set_value(64)
    at.sidebar.selectbox(key="resize").set_value("fit")
    at.sidebar.toggle(key="tiles").set_value(True).run()
    at.sidebar.number_input(key="tile_size").set_value(80).run()
    assert any("does not fit in the working size" in e.value for e in at.sidebar.error)
    assert at.sidebar.button(key="start").disabled
    at.sidebar.number_input(key="tile_size").set_value(32)
    at.sidebar.number_input(key="tile_overlap").set_value(8)
    at.sidebar.file_uploader(key="roi_file").set_value(("roi.png", _roi_png(), "image/png")).run()
    at.sidebar.button(key="start").click().run()
    no_failure(at)

    run = at.session_state["run"]
    model, results = run.model, run.results
    assert model.preprocess.mode == "fit" and model.tiling.size == (32, 32) and model.tiling.overlap == 8
    assert model.tile_grid.count == 9  # 3 x 3 tiles of 32 px, 8 px shared, over 64 px
    assert model.roi_mask[:, :32].any() and not model.roi_mask[:, 32:].any()
    assert results.maps.shape[1:] == (64, 64) and not results.maps[:, :, 32:].any()  # nothing scores outside
    assert any("Region of interest roi.png" in c.value for c in at.caption)

    # The region table is find_regions on the selected image's map at its own size.
    i = at.selectbox(key="regions_image_1").value
    pixel = at.slider(key="pixel_threshold_1")
    pixel.set_value(float(np.quantile(results.maps[i][results.maps[i] > 0], 0.9))).run()
    expected = find_regions(
        map_to_original(results.maps[i], model.preprocess, results.size(i)),
        pixel.value,
        at.sidebar.number_input(key="min_area").value,
    )
    table = at.dataframe[-1].value
    assert len(expected) > 0 and list(table["area (px)"]) == [r.area for r in expected]
    assert list(zip(table["x0"], table["y0"], table["x1"], table["y1"], strict=True)) == [r.bbox for r in expected]
    assert all(r.bbox[2] <= 24 for r in expected)  # inside the region of interest: the left half of 48 px

    # The decision rule flips the verdicts: by score none reaches the top threshold, by regions all have one.
    at.slider(key="threshold_1").set_value(at.slider(key="threshold_1").max)
    at.slider(key="pixel_threshold_1").set_value(at.slider(key="pixel_threshold_1").min).run()
    assert at.metric[0].value == "0 of 4"
    at.sidebar.selectbox(key="decision").set_value("regions").run()
    assert at.metric[0].value == "4 of 4"
    assert all("called defective" in m.value for m in at.markdown if m.value.startswith("**"))
    at.sidebar.number_input(key="min_area").set_value(10**6).run()  # no region is that large
    assert at.metric[0].value == "0 of 4"
    no_failure(at)

    # The score tab judges uploads with the same rule and lists their regions.
    images = sorted((tmp_path / "tiny" / "test" / "scratch").iterdir())
    at.sidebar.number_input(key="min_area").set_value(0)
    at.file_uploader(key="score_files").set_value(files(images)).run()
    no_failure(at)
    assert "regions" not in at.dataframe[-1].value.columns  # the model has no thresholds: no regions
