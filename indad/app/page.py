"""The indad web app: train on good images, inspect the results, score new images (Streamlit).

Run with ``streamlit run streamlit_app.py`` or ``indad app``. The page is laid
out here; what it computes lives in :mod:`indad.app.logic`.
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

from indad.app import logic
from indad.app.review import review_tab
from indad.config import build_model
from indad.data import MVTEC_CLASSES, data_root, list_images, resolve_dataset
from indad.data.transforms import RESIZE_MODES
from indad.errors import InputError
from indad.files import csv_text
from indad.regions import Region
from indad.thresholds import DECISION_RULES, Decision, Thresholds

SOURCES = ("Dataset on disk", "Download an MVTec AD class", "Upload images")
METHOD_NAMES = {"patchcore": "PatchCore", "padim": "PaDiM", "spade": "SPADE"}
PER_PAGE = 6
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


@dataclass
class Run:
    """A finished training run kept between page reruns."""

    id: int
    title: str
    model: Any
    results: logic.RunResults | None
    seconds: float


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
        found = logic.find_datasets(root)
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
                f"Good images (at least {logic.MIN_GOOD_IMAGES})", accept_multiple_files=True, key="good_files"
            )
            or []
        )
        test_files = sb.file_uploader("Test images (optional)", accept_multiple_files=True, key="test_files") or []
    sb.header("2. Method")
    method = sb.selectbox("Method", list(logic.APP_METHODS), format_func=lambda m: METHOD_NAMES.get(m, m), key="method")
    backbone = sb.selectbox(
        "Backbone",
        logic.backbone_choices(),
        key="backbone",
        help="The EfficientNet-Lite weights come with indad; the others are downloaded.",
    )
    defaults = logic.default_params(method)
    params: dict[str, Any] = {"backbone_name": logic.backbone_name(backbone)}
    for spec in logic.param_specs(method):
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
        params.update(shape)
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
        tile_size = int(cols[0].number_input("Tile size (px)", 16, 2048, logic.TILE_SIZE, 16, key="tile_size"))
        overlap = int(cols[1].number_input("Overlap (px)", 0, 1024, logic.TILE_OVERLAP, 8, key="tile_overlap"))
    roi_file = sb.file_uploader(
        "Region of interest (optional)",
        type=["png", "jpg", "jpeg", "bmp", "tif", "tiff"],
        key="roi_file",
        help="A mask picture with the images' aspect ratio: white where the model inspects; outside it nothing scores.",
    )
    try:
        return logic.shape_params(image_size, resize, tile_size, overlap), roi_file
    except InputError as exc:
        sb.error(str(exc))
        return None, roi_file


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
def _uploaded(files) -> list[tuple[str, bytes]]:
    return [(f.name, f.getvalue()) for f in files]


def _show_check(check: logic.UploadCheck) -> None:
    for message in check.errors:
        st.error(message)
    for message in check.warnings:
        st.warning(message)


def train(settings: Settings) -> Run | None:
    """Fit the chosen method with live progress and score the test images; None (with a message) on failure."""
    bar = st.progress(0.0, text="Loading the backbone...")
    progress = logic.ThrottledProgress(lambda fraction, text: bar.progress(fraction, text=text))
    start = time.perf_counter()
    train_data: list[Image.Image] | Path
    try:
        if settings.source == SOURCES[2]:
            good = logic.read_uploads(_uploaded(settings.good_files), "good", logic.MIN_GOOD_IMAGES)
            test = logic.read_uploads(_uploaded(settings.test_files), "test")
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
            logic.apply_roi(model, logic.read_roi_upload(name, settings.roi_file.getvalue()), name)
        holdout = logic.HOLDOUT if n_good >= logic.HOLDOUT_MIN_IMAGES else 0.0
        model.fit(train_data, holdout=holdout)
        if settings.source == SOURCES[2]:
            results = None
            if test.images:
                pred = model.predict(test.images)
                results = logic.RunResults(test.names, pred.scores.astype(np.float64), pred.maps, test.images)
        elif (folder / "test").is_dir():
            results = logic.results_from_evaluation(model.evaluate(folder, keep_maps=True), folder)
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


# ----------------------------------------------------------------- results
def _histogram(results: logic.RunResults, threshold: float):
    import altair as alt
    import pandas as pd

    rows = logic.histogram_rows(results)
    colours = {"good": "#2ca02c", "defective": "#d62728", "unlabelled": "#1f77b4"}
    kinds = [k for k in colours if any(r["kind"] == k for r in rows)]
    bars = (
        alt.Chart(pd.DataFrame(rows))
        .mark_bar(opacity=0.7)
        .encode(
            x=alt.X("score:Q", title="image score", bin="binned"),
            x2="score_end:Q",
            y=alt.Y("images:Q", title="images", stack=None, axis=alt.Axis(tickMinStep=1, format="d")),
            color=alt.Color("kind:N", title="", scale=alt.Scale(domain=kinds, range=[colours[k] for k in kinds])),
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"threshold": [threshold]}))
        .mark_rule(color="black", strokeDash=[4, 3])
        .encode(x="threshold:Q")
    )
    return (bars + rule).properties(height=220)


@dataclass
class Judged:
    """The test images judged at the page's thresholds and decision rule."""

    thresholds: Thresholds
    regions: list[list[Region]]
    flagged: np.ndarray
    decision: Decision


def show_results(run: Run, decision: Decision) -> None:
    model, results = run.model, run.results
    st.success(f"{run.title}: trained and scored in {run.seconds:.1f} s.")
    if model.roi_mask is not None:
        st.caption(f"Region of interest {model.roi}: outside it (dimmed, edged in gold) nothing scores.")
    if results is None:
        st.info("No test images to score. Download the model below, or score images in the other tab.")
        chosen = model.thresholds
    else:
        if results.metrics:
            st.subheader("Metrics")
            st.dataframe(logic.metrics_rows(results.metrics), hide_index=True)
        judged = decisions_section(run, results, decision)
        gallery_section(run, results, judged)
        chosen = judged.thresholds
    download_section(run, chosen)


def _threshold_slider(label: str, values: np.ndarray, start: float, key: str) -> float:
    """A threshold slider starting at ``start``, spanning ``values`` and ``start`` with a 5% margin, 500 steps."""
    lo, hi = min(float(np.min(values)), start), max(float(np.max(values)), start)
    margin = max(hi - lo, 1e-6) * 0.05
    step = (hi - lo + 2 * margin) / 500
    return st.slider(
        label, min_value=lo - margin, max_value=hi + margin, value=start, step=step, format="%.4f", key=key
    )


def _regions(run: Run, results: logic.RunResults, pixel: float, min_area: int) -> list[list[Region]]:
    """Every test image's defect regions, computed once per pixel threshold and smallest area."""
    cache = st.session_state.setdefault("regions_cache", {})
    key = (run.id, pixel, min_area)
    if key not in cache:
        cache.clear()
        cache[key] = logic.image_regions(results, run.model.preprocess, pixel, min_area)
    return cache[key]


def decisions_section(run: Run, results: logic.RunResults, decision: Decision) -> Judged:
    st.subheader("Scores")
    start = logic.default_threshold(results, run.model.thresholds)
    threshold = _threshold_slider(
        "Image threshold: a score at or above it is called defective", results.scores, start, f"threshold_{run.id}"
    )
    st.caption(logic.threshold_origin(run.model.thresholds, results.metrics))
    pixel_start = run.model.thresholds.pixel if run.model.thresholds is not None else start
    pixel = _threshold_slider(
        "Pixel threshold: map pixels at or above it form the defect regions",
        results.maps,
        pixel_start,
        f"pixel_threshold_{run.id}",
    )
    thresholds = logic.thresholds_at(run.model.thresholds, threshold, pixel)
    regions = _regions(run, results, pixel, decision.min_area)
    flagged = logic.verdicts(results.scores, regions, decision, thresholds)
    if decision.by == "regions":
        st.caption(
            f"Images are called defective by their defect regions (at least {decision.min_area} px), "
            "not by the image threshold."
        )
    counts = logic.decision_counts(flagged, results.labels)
    cols = st.columns(4)
    cols[0].metric("Called defective", f"{counts.flagged} of {counts.total}")
    tp, fp, fn, tn = counts.tp, counts.fp, counts.fn, counts.tn
    if tp is not None and fp is not None and fn is not None and tn is not None:  # all set together, with labels
        cols[1].metric("Defective found (recall)", f"{tp} of {tp + fn}")
        cols[2].metric("Good called defective", f"{fp} of {fp + tn}")
        cols[3].metric("Precision", "-" if counts.precision is None else f"{counts.precision:.2f}")
    st.altair_chart(_histogram(results, threshold), width="stretch")
    judged = Judged(thresholds, regions, flagged, decision)
    rows = logic.score_rows(results.names, results.scores, thresholds, regions, decision)
    if results.defects is not None:
        for row, defect in zip(rows, results.defects, strict=True):
            row["truth"] = defect
    st.download_button(
        "Download the decisions (CSV)",
        csv_text(rows),
        file_name="decisions.csv",
        mime="text/csv",
        key="download_decisions",
    )
    return judged


def gallery_section(run: Run, results: logic.RunResults, judged: Judged) -> None:
    model = run.model
    st.subheader("Gallery")
    cols = st.columns([3, 2, 2])
    defects = None
    if results.defects is not None:
        kinds = sorted(set(results.defects))
        defects = cols[0].multiselect("Defect types", kinds, default=kinds, key=f"defects_{run.id}")
    sort = cols[1].selectbox("Sort", logic.SORTS, key="sort")
    auto = logic.auto_colour_range(results.maps)
    manual = cols[2].toggle("Set the colour range by hand", key="manual_colours")
    colour_range = auto
    if manual:
        colour_range = cols[2].slider(
            "Anomaly map colour range",
            min_value=auto[0],
            max_value=auto[1],
            value=auto,
            format="%.3f",
            key=f"colours_{run.id}",
        )
        if colour_range[1] <= colour_range[0]:
            colour_range = (colour_range[0], colour_range[0] + 1e-6)
    order = logic.gallery_order(results, defects, sort)
    if not order:
        st.info("No test image of the chosen defect types.")
        return
    pages = (len(order) + PER_PAGE - 1) // PER_PAGE
    page = 1
    if pages > 1:
        page = st.columns(4)[0].number_input(
            f"Page (of {pages}, {len(order)} images)", 1, pages, 1, key=f"page_{run.id}"
        )
    pixel = judged.thresholds.pixel
    for i in order[(page - 1) * PER_PAGE : page * PER_PAGE]:
        regions = judged.regions[i]
        pics = logic.gallery_pictures(results, i, model.preprocess, colour_range, pixel, model.roi_mask, regions)
        score = float(results.scores[i])
        verdict = "defective" if judged.flagged[i] else "good"
        truth = f" · truth: {results.defects[i]}" if results.defects is not None else ""
        found = logic.regions_summary(regions)
        st.markdown(f"**{results.names[i]}** · score {score:.4f} · {found} · called {verdict}{truth}")
        row = st.columns(4)
        row[0].image(pics.image, caption="image", width="stretch")
        row[1].image(pics.heatmap, caption="anomaly map", width="stretch")
        row[2].image(pics.overlay, caption="overlay", width="stretch")
        if pics.mask is not None:
            row[3].image(pics.mask, caption="ground truth", width="stretch")
        else:
            row[3].caption("no ground-truth mask")
    regions_table(run, results, order, judged)


def regions_table(run: Run, results: logic.RunResults, order: list[int], judged: Judged) -> None:
    """The defect regions of one chosen image: boxes, centroids, areas in its own pixels, peak and mean scores."""
    st.subheader("Defect regions")
    i = st.selectbox(
        "Image",
        order,
        format_func=lambda j: f"{results.names[j]} ({logic.regions_summary(judged.regions[j])})",
        key=f"regions_image_{run.id}",
    )
    if i is None:
        return
    rows = logic.region_rows(judged.regions[i])
    if rows:
        st.dataframe(rows, hide_index=True, key=f"regions_table_{run.id}")
    else:
        st.caption(
            f"No region of at least {judged.decision.min_area} px at the pixel threshold {judged.thresholds.pixel:.4f}."
        )


def download_section(run: Run, chosen: Thresholds | None) -> None:
    model = run.model
    thresholds = None if chosen is None else logic.with_image_threshold(model.thresholds, chosen.image, chosen.pixel)
    st.subheader("Use the model")
    if thresholds is None:
        st.caption(
            "This model has no thresholds (fewer than "
            f"{logic.HOLDOUT_MIN_IMAGES} good images to set some aside): "
            "`indad calibrate MODEL --good DIR` sets them."
        )
    else:
        st.caption(
            f"The file carries the image threshold {thresholds.image:.4f} and the pixel threshold "
            f"{thresholds.pixel:.4f} set above. "
            "Score folders with `indad predict MODEL.indad IMAGES --out DIR`."
        )
    name = run.title.lower().replace(" ", "_").replace("/", "_")
    st.download_button(
        "Download the model (.indad)",
        data=lambda: logic.model_file_bytes(model, thresholds),
        file_name=f"{name}.indad",
        mime="application/octet-stream",
        key="download_model",
    )


# ----------------------------------------------------------------- scoring with a saved model
def _load_uploaded_model(upload):
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
            f"{logic.shape_summary(model)}"
        )
    files = st.file_uploader("Images to score", accept_multiple_files=True, key="score_files")
    if not files:
        return
    check = logic.read_uploads(_uploaded(files), "scored")
    _show_check(check)
    if not check.images:
        return
    try:
        pred = model.predict(check.images)
    except Exception as exc:
        st.error(f"Scoring failed: {exc}")
        return
    results = logic.RunResults(check.names, pred.scores.astype(np.float64), pred.maps, check.images)
    regions = None
    if model.thresholds is not None:
        regions = logic.image_regions(results, model.preprocess, model.thresholds.pixel, decision.min_area)
    rows = logic.score_rows(check.names, pred.scores, model.thresholds, regions, decision)
    st.dataframe(rows, hide_index=True)
    st.download_button(
        "Download the scores (CSV)", csv_text(rows), file_name="scores.csv", mime="text/csv", key="download_scores"
    )
    colour_range = logic.auto_colour_range(results.maps)
    pixel = model.thresholds.pixel if model.thresholds is not None else None
    for i, name in enumerate(check.names):
        found = [] if regions is None else regions[i]
        pics = logic.gallery_pictures(results, i, model.preprocess, colour_range, pixel, model.roi_mask, found)
        verdict = f" · {logic.regions_summary(found)} · called {rows[i]['decision']}" if regions is not None else ""
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
