"""The app's review page in a real headless Chromium: a record's results labelled by keyboard and by button."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from indad.lifecycle.record import PredictionRecord
from tests.app.test_browser import PAGE_LOAD_S, VIEWPORT, browser  # noqa: F401 (the fixture)
from tests.helpers import streamlit_app, tail

pytestmark = pytest.mark.browser


@pytest.fixture
def review_record(tiny_dataset: Path, tmp_path: Path) -> Path:
    """A record of three results: newest first they are defect 001, defect 000, good 000."""
    db = tmp_path / "record.db"
    record = PredictionRecord(db)
    sources = [tiny_dataset / "test" / "good" / "000.png", *sorted((tiny_dataset / "test" / "scratch").iterdir())]
    for i, (source, norm) in enumerate(zip(sources, (0.5, 1.05, 2.0), strict=True)):
        record.write({"id": f"res{i}", "time": f"2026-12-03T10:00:0{i}Z", "source": str(source), "score": norm * 10,
                      "normalized_score": norm, "decision": "defective" if norm >= 1 else "good", "threshold": 10.0,
                      "model": "model"})  # fmt: skip
    return db


@pytest.fixture
def review_app(review_record: Path, tiny_model_file: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    log = tmp_path / "streamlit.log"
    env = {"INDAD_RECORD": str(review_record), "INDAD_REVIEW_MODEL": str(tiny_model_file)}
    with streamlit_app(env, log) as url:
        yield url, log


def test_review_by_keyboard_and_button(review_app, browser, review_record: Path, tmp_path: Path):  # noqa: F811
    url, log = review_app
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = context.new_page()
    try:
        page.goto(url)
        page.get_by_role("tab", name="Review").wait_for(timeout=PAGE_LOAD_S * 1000)
        page.get_by_role("tab", name="Review").click()
        panel = page.get_by_role("tabpanel", name="Review")
        panel.get_by_text("scratch/001.png").first.wait_for(timeout=60_000)  # newest first
        # the image and its heatmap side by side
        page.wait_for_function(
            """() => { const c = [...document.querySelectorAll('[data-testid="stImageCaption"]')].map(e => e.innerText);
                       return c.includes('image') && c.includes('anomaly map'); }""",
            timeout=60_000,
        )
        page.get_by_test_id("stStatusWidget").wait_for(state="detached", timeout=30_000)
        for attempt in range(3):  # a key pressed before the page has bound its shortcuts is lost: press again
            page.keyboard.press("f")  # false alarm
            try:
                page.get_by_text("recorded res2: false_alarm").wait_for(timeout=15_000)
                break
            except PlaywrightTimeout:
                if attempt == 2:
                    raise
        panel.get_by_text("scratch/000.png").first.wait_for(timeout=30_000)
        panel.get_by_role("button", name="Confirmed (y)").click()
        page.get_by_text("recorded res1: confirmed").wait_for(timeout=30_000)
        assert PredictionRecord(review_record).labels() == {"res2": "false_alarm", "res1": "confirmed"}
        assert page.get_by_test_id("stException").count() == 0
    except Exception as exc:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(tmp_path / "failure.png"))
        raise AssertionError(f"{exc}\nserver log:\n{tail(log)}") from exc
    finally:
        context.close()
