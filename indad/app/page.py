"""The indad web app: train on good images, inspect the results, score new images (Streamlit).

Run with ``streamlit run streamlit_app.py`` or ``indad app``. The page is laid
out here; what it computes lives in :mod:`~indad.app.choices` (settings offered), :mod:`~indad.app.inputs`
(datasets, uploads), :mod:`~indad.app.outcomes` (a run's results) and :mod:`~indad.app.gallery` (regions, pictures).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from indad.app import choices, gallery, inputs, outcomes
from indad.app.results_view import Run, show_results
from indad.app.review import review_tab
from indad.config import build_model
from indad.data import MVTEC_CLASSES, data_root, list_images, resolve_dataset
from indad.data.transforms import RESIZE_MODES
from indad.errors import InputError
from indad.files import csv_text
from indad.methods import AnomalyModel
from indad.thresholds import DECISION_RULES, Decision

SOURCES = ("Dataset on disk", "Download an MVTec AD class", "Upload images")
METHOD_NAMES = {"patchcore": "PatchCore", "padim": "PaDiM", "spade": "SPADE"}
RESIZE_NAMES = {"stretch": "stretch to the size", "fit": "fit inside, keep the aspect ratio"}
RULE_NAMES = {"score": "image score", "regions": "defect regions"}


@dataclass
class Settings:
    """What the sidebar asks for."""

    source: str
    dataset: Path | None
    mvtec_class: str | None
    root: str
    good_files: list[Any]
    test_files: list[Any]
    method: str
    params: dict[str, Any]
    roi_file: Any
    start: bool
    decision: Decision


# ----------------------------------------------------------------- sidebar
def sidebar() -> Settings:
    sb = st.sidebar
    sb.header("1. Good images")
    source = sb.radio("Data source", SOURCES, key="source")
    dataset, mvtec_class, good_files, test_files = None, None, [], []
    root = str(data_root())
    if source != SOURCES[2]:
        root = sb.text_input(
            "Data root",
            value=root,
            key="data_root",
            help="Folder holding datasets in MVTec AD layout (NAME/train/good, NAME/test/...).",
        )
    if source == SOURCES[0]:
        found = inputs.find_datasets(root)
        if not found:
            sb.warning(f"No dataset in MVTec AD layout (NAME/train/good/*.png) under {root}.")
        choice = sb.selectbox("Dataset", found, format_func=lambda d: d.path.name, key="dataset")
        dataset = choice.path if choice is not None else None
        if choice is not None:
            sb.caption(choice.summary)
    elif source == SOURCES[1]:
        mvtec_class = sb.selectbox(
            "MVTec AD class",
            MVTEC_CLASSES,
            key="mvtec_class",
            help="Downloaded into the data root the first time (needs internet).",
        )
    else:
        good_files = (
            sb.file_uploader(
                f"Good images (at least {choices.MIN_GOOD_IMAGES})", accept_multiple_files=True, key="good_files"
            )
            or []
        )
        test_files = sb.file_uploader("Test images (optional)", accept_multiple_files=True, key="test_files") or []
    sb.header("2. Method")
    method = sb.selectbox(
        "Method", list(choices.APP_METHODS), format_func=lambda m: METHOD_NAMES.get(m, m), key="method"
    )
    backbone = sb.selectbox(
        "Backbone",
        choices.backbone_choices(),
        key="backbone",
        help="The EfficientNet-Lite weights come with indad; the others are downloaded.",
    )
    defaults = choices.default_params(method)
    params: dict[str, Any] = {"backbone_name": choices.backbone_name(backbone)}
    for spec in choices.param_specs(method):
        default = defaults[spec.name]
        is_int = isinstance(default, int)
        cast = int if is_int else float
        params[spec.name] = sb.number_input(
            spec.label,
            min_value=cast(spec.low),
            max_value=cast(spec.high),
            value=cast(default),
            step=cast(spec.step),
            help=spec.help,
            key=f"{method}_{spec.name}",
            format=None if is_int else "%.3f" if spec.step < 0.01 else "%.2f",
        )
    shape, roi_file = image_handling(int(params["image_size"]))
    if shape is not None:
        params.update(shape | line_variation())
    start = sb.button("Start", type="primary", key="start", width="stretch", disabled=shape is None)
    return Settings(
        source, dataset, mvtec_class, root, good_files, test_files, method, params, roi_file, start, decision_rule()
    )


def image_handling(image_size: int) -> tuple[dict[str, Any] | None, Any]:
    """The resize mode, tiles and region of interest: model parameters (None if invalid), the ROI upload."""
    sb = st.sidebar
    sb.header("3. What the model sees")
    resize = sb.selectbox(
        "Resize",
        RESIZE_MODES,
        format_func=lambda m: RESIZE_NAMES.get(m, m),
        key="resize",
        help="Stretch every image to the image size, or fit it inside keeping its aspect ratio (black borders).",
    )
    tiled = sb.toggle(
        "Cut into tiles",
        key="tiles",
        help="Score overlapping tiles of the working image (for large images and small defects); "
        "the tiles' maps are stitched back.",
    )
    tile_size, overlap = None, 0
    if tiled:
        cols = sb.columns(2)
        tile_size = int(cols[0].number_input("Tile size (px)", 16, 2048, choices.TILE_SIZE, 16, key="tile_size"))
        overlap = int(cols[1].number_input("Overlap (px)", 0, 1024, choices.TILE_OVERLAP, 8, key="tile_overlap"))
    roi_file = sb.file_uploader(
        "Region of interest (optional)",
        type=["png", "jpg", "jpeg", "bmp", "tif", "tiff"],
        key="roi_file",
        help="A mask picture with the images' aspect ratio: white where the model inspects; outside it nothing scores.",
    )
    try:
        return choices.shape_params(image_size, resize, tile_size, overlap), roi_file
    except InputError as exc:
        sb.error(str(exc))
        return None, roi_file


def line_variation() -> dict[str, Any]:
    """The expected variation of the line's images, photometric standardisation and alignment: model parameters."""
    with st.sidebar.expander("What the line varies"):
        values = {
            spec.name: st.slider(
                spec.label, spec.low, spec.high, 0.0, spec.step, help=spec.help, key=f"variation_{spec.name}"
            )
            for spec in choices.VARIATION_SPECS
        }
        standardize = st.toggle(
            "Standardise each image's brightness and contrast", key="photometric", help="At fit and at scoring."
        )
        align = st.toggle(
            "Align each image to the first good image",
            key="align",
            help="Fixtured parts that shift or turn a little (needs OpenCV). Model files only: no export.",
        )
    return choices.robust_params(values, standardize, align)


def decision_rule() -> Decision:
    """The sidebar's decision rule and smallest defect region: they apply to the results at once."""
    sb = st.sidebar
    sb.header("4. Decisions")
    by = sb.selectbox(
        "Call an image defective by",
        DECISION_RULES,
        format_func=lambda r: RULE_NAMES.get(r, r),
        key="decision",
        help="Image score: the score reaches the image threshold. Defect regions: some region of pixels at or "
        "above the pixel threshold, of at least the smallest area, remains.",
    )
    min_area = sb.number_input(
        "Smallest defect region (px)",
        min_value=0,
        value=0,
        step=10,
        key="min_area",
        help="Regions of fewer pixels (of the original image) are left out of the counts, the tables and the "
        "regions decision. No retraining needed.",
    )
    return Decision(by, int(min_area))


# ----------------------------------------------------------------- training
def _uploaded(files: list[Any]) -> list[tuple[str, bytes]]:
    return [(f.name, f.getvalue()) for f in files]


def _show_check(check: inputs.UploadCheck) -> None:
    for message in check.errors:
        st.error(message)
    for message in check.warnings:
        st.warning(message)


def train(settings: Settings) -> Run | None:
    """Fit the chosen method with live progress and score the test images; None (with a message) on failure."""
    bar = st.progress(0.0, text="Loading the backbone...")
    progress = inputs.ThrottledProgress(lambda fraction, text: bar.progress(fraction, text=text))
    start = time.perf_counter()
    train_data: list[Image.Image] | Path
    try:
        if settings.source == SOURCES[2]:
            good = inputs.read_uploads(_uploaded(settings.good_files), "good", choices.MIN_GOOD_IMAGES)
            test = inputs.read_uploads(_uploaded(settings.test_files), "test")
            _show_check(good)
            _show_check(test)
            if not (good.ok and test.ok):
                bar.empty()
                return None
            train_data, n_good, title = good.images, len(good.images), f"{len(good.images)} uploaded images"
        else:
            if settings.source == SOURCES[0]:
                if settings.dataset is None:
                    raise ValueError(f"no dataset to train on: none found under {settings.root}")
                folder = settings.dataset
            else:
                if settings.mvtec_class is None:
                    raise ValueError("no MVTec AD class chosen")
                folder = resolve_dataset(settings.mvtec_class, settings.root, download=True)
            train_data, n_good, title = folder, len(list_images(folder / "train" / "good")), folder.name
        model = build_model(settings.method, {**settings.params, "progress": progress}, "settings")
        if settings.roi_file is not None:
            name = settings.roi_file.name
            inputs.apply_roi(model, inputs.read_roi_upload(name, settings.roi_file.getvalue()), name)
        holdout = choices.HOLDOUT if n_good >= choices.HOLDOUT_MIN_IMAGES else 0.0
        model.fit(train_data, holdout=holdout)
        if settings.source == SOURCES[2]:
            results = None
            if test.images:
                pred = model.predict(test.images)
                results = outcomes.RunResults(test.names, pred.scores.astype(np.float64), pred.maps, test.images)
        elif (folder / "test").is_dir():
            results = outcomes.results_from_evaluation(model.evaluate(folder, keep_maps=True), folder)
        else:
            results = None
    except Exception as exc:  # every failure is shown in the page, never as a traceback
        bar.empty()
        st.error(f"Training failed: {exc}" if str(exc) else f"Training failed: {type(exc).__name__}")
        return None
    finally:
        progress.show = lambda *_: None
    bar.empty()
    model.progress = False  # the bar belongs to this page run
    run_id = st.session_state.get("run_counter", 0) + 1
    st.session_state["run_counter"] = run_id
    return Run(run_id, f"{METHOD_NAMES[settings.method]} on {title}", model, results, time.perf_counter() - start)


# ----------------------------------------------------------------- scoring with a saved model
def _load_uploaded_model(upload: Any) -> AnomalyModel:
    """The model of an uploaded ``.indad`` file, loaded once per upload."""
    cache = st.session_state.setdefault("loaded_models", {})
    if upload.file_id not in cache:
        import indad

        with tempfile.TemporaryDirectory(prefix="indad-app-") as tmp:
            path = Path(tmp) / Path(upload.name).name
            path.write_bytes(upload.getvalue())
            cache.clear()
            cache[upload.file_id] = indad.load(path)
    return cache[upload.file_id]


def score_tab(run: Run | None, decision: Decision) -> None:
    st.markdown("Score new images with the model trained in the other tab, or with a saved `.indad` file.")
    sources = (["The model trained in this session"] if run is not None else []) + ["A saved model file"]
    which = st.radio(
        "Model",
        sources,
        horizontal=True,  # a new run: its model is the default again
        key=f"score_model_source_{run.id if run is not None else 0}",
    )
    model = run.model if which == sources[0] and run is not None else None
    if model is None:
        upload = st.file_uploader("Saved model (.indad)", type=["indad"], key="model_file")
        if upload is None:
            return
        try:
            model = _load_uploaded_model(upload)
        except Exception as exc:
            st.error(f"Cannot use {upload.name}: {exc}")
            return
        st.caption(
            f"{METHOD_NAMES.get(model.method, model.method)} on {model.backbone_name}, "
            f"thresholds: {'none' if model.thresholds is None else f'{model.thresholds.image:.4f}'}, "
            f"{choices.shape_summary(model)}"
        )
    files = st.file_uploader("Images to score", accept_multiple_files=True, key="score_files")
    if not files:
        return
    check = inputs.read_uploads(_uploaded(files), "scored")
    _show_check(check)
    if not check.images:
        return
    try:
        pred = model.predict(check.images)
    except Exception as exc:
        st.error(f"Scoring failed: {exc}")
        return
    results = outcomes.RunResults(check.names, pred.scores.astype(np.float64), pred.maps, check.images)
    regions = None
    if model.thresholds is not None:
        regions = gallery.image_regions(results, model.preprocess, model.thresholds.pixel, decision.min_area)
    rows = gallery.score_rows(check.names, pred.scores, model.thresholds, regions, decision)
    st.dataframe(rows, hide_index=True)
    st.download_button(
        "Download the scores (CSV)", csv_text(rows), file_name="scores.csv", mime="text/csv", key="download_scores"
    )
    colour_range = outcomes.auto_colour_range(results.maps)
    pixel = model.thresholds.pixel if model.thresholds is not None else None
    for i, name in enumerate(check.names):
        found = [] if regions is None else regions[i]
        pics = gallery.gallery_pictures(results, i, model.preprocess, colour_range, pixel, model.roi_mask, found)
        verdict = f" · {gallery.regions_summary(found)} · called {rows[i]['decision']}" if regions is not None else ""
        st.markdown(f"**{name}** · score {float(pred.scores[i]):.4f}{verdict}")
        row = st.columns(3)
        row[0].image(pics.image, caption="image", width="stretch")
        row[1].image(pics.heatmap, caption="anomaly map", width="stretch")
        row[2].image(pics.overlay, caption="overlay", width="stretch")


# ----------------------------------------------------------------- page
def main() -> None:
    st.set_page_config(page_title="indad: anomaly detection", page_icon=":mag:", layout="wide")
    st.title("indad: find defects, learning from good images only")
    settings = sidebar()
    train_tab, score, review = st.tabs(["Train and inspect", "Score images", "Review"])
    with train_tab:
        if settings.start:
            run = train(settings)
            if run is not None:
                st.session_state["run"] = run
        run = st.session_state.get("run")
        if run is None:
            st.markdown(
                "1. Choose images of **good** parts in the sidebar: a dataset on disk in MVTec AD layout, "
                "an MVTec AD class, or your own uploads.\n"
                "2. Choose a method (PatchCore is the most accurate) and press **Start**.\n"
                "3. Browse the scores and anomaly maps of the test images, set the threshold, "
                "and download the model."
            )
        else:
            show_results(run, settings.decision)
    with score:
        score_tab(st.session_state.get("run"), settings.decision)
    with review:
        review_tab()
