"""The page's results of a run: metrics, decisions at a threshold, the gallery, defect regions, downloads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from indad.app import choices, gallery, outcomes
from indad.files import csv_text
from indad.regions import Region
from indad.thresholds import Decision, Thresholds

PER_PAGE = 6


@dataclass
class Run:
    """A finished training run kept between page reruns."""

    id: int
    title: str
    model: Any
    results: outcomes.RunResults | None
    seconds: float


# ----------------------------------------------------------------- results
def _histogram(results: outcomes.RunResults, threshold: float) -> Any:
    import altair as alt
    import pandas as pd

    rows = outcomes.histogram_rows(results)
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
            st.dataframe(outcomes.metrics_rows(results.metrics), hide_index=True)
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


def _regions(run: Run, results: outcomes.RunResults, pixel: float, min_area: int) -> list[list[Region]]:
    """Every test image's defect regions, computed once per pixel threshold and smallest area."""
    cache = st.session_state.setdefault("regions_cache", {})
    key = (run.id, pixel, min_area)
    if key not in cache:
        cache.clear()
        cache[key] = gallery.image_regions(results, run.model.preprocess, pixel, min_area)
    return cache[key]


def decisions_section(run: Run, results: outcomes.RunResults, decision: Decision) -> Judged:
    st.subheader("Scores")
    start = outcomes.default_threshold(results, run.model.thresholds)
    threshold = _threshold_slider(
        "Image threshold: a score at or above it is called defective", results.scores, start, f"threshold_{run.id}"
    )
    st.caption(outcomes.threshold_origin(run.model.thresholds, results.metrics))
    pixel_start = run.model.thresholds.pixel if run.model.thresholds is not None else start
    pixel = _threshold_slider(
        "Pixel threshold: map pixels at or above it form the defect regions",
        results.maps,
        pixel_start,
        f"pixel_threshold_{run.id}",
    )
    thresholds = gallery.thresholds_at(run.model.thresholds, threshold, pixel)
    regions = _regions(run, results, pixel, decision.min_area)
    flagged = gallery.verdicts(results.scores, regions, decision, thresholds)
    if decision.by == "regions":
        st.caption(
            f"Images are called defective by their defect regions (at least {decision.min_area} px), "
            "not by the image threshold."
        )
    counts = outcomes.decision_counts(flagged, results.labels)
    cols = st.columns(4)
    cols[0].metric("Called defective", f"{counts.flagged} of {counts.total}")
    tp, fp, fn, tn = counts.tp, counts.fp, counts.fn, counts.tn
    if tp is not None and fp is not None and fn is not None and tn is not None:  # all set together, with labels
        cols[1].metric("Defective found (recall)", f"{tp} of {tp + fn}")
        cols[2].metric("Good called defective", f"{fp} of {fp + tn}")
        cols[3].metric("Precision", "-" if counts.precision is None else f"{counts.precision:.2f}")
    st.altair_chart(_histogram(results, threshold), width="stretch")
    judged = Judged(thresholds, regions, flagged, decision)
    rows = gallery.score_rows(results.names, results.scores, thresholds, regions, decision)
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


def gallery_section(run: Run, results: outcomes.RunResults, judged: Judged) -> None:
    model = run.model
    st.subheader("Gallery")
    cols = st.columns([3, 2, 2])
    defects = None
    if results.defects is not None:
        kinds = sorted(set(results.defects))
        defects = cols[0].multiselect("Defect types", kinds, default=kinds, key=f"defects_{run.id}")
    sort = cols[1].selectbox("Sort", outcomes.SORTS, key="sort")
    auto = outcomes.auto_colour_range(results.maps)
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
    order = outcomes.gallery_order(results, defects, sort)
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
        pics = gallery.gallery_pictures(results, i, model.preprocess, colour_range, pixel, model.roi_mask, regions)
        score = float(results.scores[i])
        verdict = "defective" if judged.flagged[i] else "good"
        truth = f" · truth: {results.defects[i]}" if results.defects is not None else ""
        found = gallery.regions_summary(regions)
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


def regions_table(run: Run, results: outcomes.RunResults, order: list[int], judged: Judged) -> None:
    """The defect regions of one chosen image: boxes, centroids, areas in its own pixels, peak and mean scores."""
    st.subheader("Defect regions")
    i = st.selectbox(
        "Image",
        order,
        format_func=lambda j: f"{results.names[j]} ({gallery.regions_summary(judged.regions[j])})",
        key=f"regions_image_{run.id}",
    )
    if i is None:
        return
    rows = gallery.region_rows(judged.regions[i])
    if rows:
        st.dataframe(rows, hide_index=True, key=f"regions_table_{run.id}")
    else:
        st.caption(
            f"No region of at least {judged.decision.min_area} px at the pixel threshold {judged.thresholds.pixel:.4f}."
        )


def download_section(run: Run, chosen: Thresholds | None) -> None:
    model = run.model
    thresholds = None if chosen is None else gallery.with_image_threshold(model.thresholds, chosen.image, chosen.pixel)
    st.subheader("Use the model")
    if thresholds is None:
        st.caption(
            "This model has no thresholds (fewer than "
            f"{choices.HOLDOUT_MIN_IMAGES} good images to set some aside): "
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
        data=lambda: gallery.model_file_bytes(model, thresholds),
        file_name=f"{name}.indad",
        mime="application/octet-stream",
        key="download_model",
    )
