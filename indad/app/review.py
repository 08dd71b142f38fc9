"""The app's review page: an operator goes through the prediction record and says what each result really was.

Newest or most uncertain (normalised score nearest 1) first; each result's image
with its heatmap beside it (when the model file is given); keyboard shortcuts
``f`` (false alarm), ``m`` (missed defect), ``y`` (confirmed: yes, defective), ``n`` (next
without a label). Labels go to the record's feedback, which ``indad retrain`` learns from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streamlit as st
from PIL import Image

from ..lifecycle.record import PredictionRecord

RECORD_ENV = "INDAD_RECORD"
"""Environment variables giving the page's defaults: the record, its images folder, the model file."""
IMAGES_ENV = "INDAD_RECORD_IMAGES"
MODEL_ENV = "INDAD_REVIEW_MODEL"
BUTTONS = (
    ("false_alarm", "False alarm", "f"),
    ("missed_defect", "Missed defect", "m"),
    ("confirmed", "Confirmed", "y"),  # "c" and "r" are Streamlit's own
)
ORDERS = {"newest": "newest first", "uncertain": "most uncertain first"}
QUEUE = 200


def review_queue(record: PredictionRecord, order: str, unreviewed_only: bool, limit: int = QUEUE) -> list[dict]:
    """The results to review, in ``order`` (newest or uncertain); only those without a label if asked."""
    rows = record.rows(limit=None if unreviewed_only else limit, order=order)
    if unreviewed_only:
        rows = [r for r in rows if r["label"] is None]
    return rows[:limit]


@st.cache_resource(show_spinner=False)
def _model(path: str, mtime: float) -> Any:
    from ..methods import load_model

    return load_model(path, device="cpu")


def heatmap(model_path: str, image: Image.Image) -> Image.Image:
    """The anomaly map of ``image`` in colour, at its size (0 to twice the pixel threshold)."""
    from ..inference.visualize import heatmap_image, heatmap_vmax, map_to_original

    model = _model(model_path, os.path.getmtime(model_path))
    amap = model.predict([image]).maps[0]
    full = map_to_original(amap, model.preprocess, image.size)
    return heatmap_image(full, heatmap_vmax(full, model.thresholds))


def drift_over_time(record: PredictionRecord, model_path: str, limit: int = 1000) -> list[dict[str, Any]]:
    """The drift statistics of the record's last ``limit`` results of this model, replayed oldest first
    (results whose image is no longer found are left out): one row per :attr:`DriftMonitor.history` entry."""
    from ..export.model_file import read_header
    from ..lifecycle.drift import DriftMonitor, DriftReference
    from ..lineage import image_statistics

    monitor = DriftMonitor(DriftReference.from_header(read_header(model_path)))
    for row in reversed(record.rows(limit=limit)):
        path = record.image_path(row)
        if path is None or row["score"] is None:
            continue
        with Image.open(path) as im:
            monitor.observe(row["score"], *image_statistics(im))
    keys = ("images", "brightness", "contrast", "ks", "above_threshold")
    return [{k: getattr(s, k) for k in keys} | {"alarm": ", ".join(s.tripped)} for s in monitor.history]


def drift_section(record: PredictionRecord, model_path: str) -> None:
    """A plot of the drift statistics over the record's results (needs the model file's reference)."""
    with st.expander("Drift over time"):
        try:
            rows = drift_over_time(record, model_path)
        except Exception as exc:  # no reference in an older model file, unreadable images: said here
            st.warning(f"no drift plot: {exc}")
            return
        if not rows:
            st.info("not enough recorded results with their images yet")
            return
        import pandas as pd

        frame = pd.DataFrame(rows).set_index("images")
        st.line_chart(frame[["brightness", "contrast", "ks", "above_threshold"]])
        tripped = frame[frame["alarm"] != ""]
        if len(tripped):
            st.error(f"drift alarm from image {tripped.index[0]}: {tripped['alarm'].iloc[0]}")


def _label(record: PredictionRecord, result_id: str, label: str, reason: str) -> None:
    record.add_feedback(result_id, label, reason or None, who="app")
    st.session_state["review_done"] = f"{result_id}: {label}"
    _seen(result_id)


def _seen(result_id: str) -> None:
    """Results labelled or passed over in this session are not shown again."""
    st.session_state.setdefault("review_seen", set()).add(result_id)


def review_tab() -> None:
    """The review page (a tab of the app)."""
    cols = st.columns(3)
    target = cols[0].text_input("Prediction record (SQLite file or database URL)", os.environ.get(RECORD_ENV, ""))
    images = cols[1].text_input("Kept images folder (optional)", os.environ.get(IMAGES_ENV, ""))
    model_path = cols[2].text_input("Model file, for heatmaps (optional)", os.environ.get(MODEL_ENV, ""))
    if not target:
        st.info("Give the prediction record that `indad serve --record`, `indad predict --record` or the line write.")
        return
    order = st.radio("Order", list(ORDERS), horizontal=True, key="review_order", format_func=ORDERS.__getitem__)
    unreviewed = st.checkbox("Only results without a label", value=True, key="review_unreviewed")
    try:
        record = PredictionRecord(target, images or None)
        queue = review_queue(record, order, unreviewed)
    except Exception as exc:  # a missing or broken record: said on the page
        st.error(f"cannot read the record: {exc}")
        return
    if model_path and Path(model_path).is_file():
        drift_section(record, model_path)
    if "review_done" in st.session_state:
        st.success(f"recorded {st.session_state['review_done']}")
    seen = st.session_state.get("review_seen", set())
    queue = [r for r in queue if r["id"] not in seen]
    if not queue:
        st.info("Nothing left to review.")
        return
    row = queue[0]
    score = "-" if row["score"] is None else f"{row['score']:.4g}"
    norm = "-" if row["normalized_score"] is None else f"{row['normalized_score']:.3f}"
    st.markdown(
        f"**{row['source'] or row['id']}** · score {score} (normalised {norm}) · decision **{row['decision'] or '-'}**"
        f" · {row['time']} · model {row['model'] or '-'} {row['model_version'] or ''} · {len(queue)} to review"
    )
    path = record.image_path(row)
    pictures = st.columns(2)
    if path is None:
        pictures[0].warning("the image is not kept (serve with --images) and its source is gone")
    else:
        image = Image.open(path).convert("RGB")
        pictures[0].image(image, caption="image", width="stretch")
        if model_path and Path(model_path).is_file():
            pictures[1].image(heatmap(model_path, image), caption="anomaly map", width="stretch")
    reason = st.text_input("Reason (optional)", key=f"reason_{row['id']}")
    buttons = st.columns(len(BUTTONS) + 1)
    for col, (label, text, key) in zip(buttons, BUTTONS, strict=False):
        col.button(f"{text} ({key})", key=f"b_{label}", shortcut=key, on_click=_label,
                   args=(record, row["id"], label, reason))  # fmt: skip
    buttons[-1].button("Next (n)", key="b_next", shortcut="n", on_click=_seen, args=(row["id"],))
