"""The web app end to end in a real headless Chromium: train PatchCore on hazelnut_reduced, browse, download.

Needs the Debian ``chromium`` (``/usr/bin/chromium``; ``.ci/run`` installs it) and the ``playwright`` Python
package (the ``test`` extra); no Playwright browser download. ``INDAD_UPDATE_SCREENSHOTS=1`` also copies the
two screenshots to ``docs/app_results.png`` and ``docs/app_gallery.png``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO, streamlit_app, tail

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PAGE_LOAD_S = 120
TRAIN_S = 180
VIEWPORT = {"width": 1400, "height": 1060}
MAX_PNG_BYTES = 400_000
HEADER_PX = 70  # Streamlit's fixed header hides the top of the page

pytestmark = pytest.mark.browser


@pytest.fixture
def app_server(tmp_path, datasets_root):
    """The app served on a free loopback port: (base URL, server log path); stopped afterwards."""
    log = tmp_path / "streamlit.log"
    with streamlit_app({"INDAD_DATA_DIR": str(datasets_root)}, log) as url:
        yield url, log


@pytest.fixture
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _scroll_to_top(locator) -> None:
    """Scroll Streamlit's main container so that the element sits just below the fixed header."""
    locator.evaluate(f"e => {{ e.style.scrollMarginTop = '{HEADER_PX}px'; e.scrollIntoView({{block: 'start'}}); }}")
    locator.page.wait_for_timeout(300)


def _choose(page, label: str, option: str) -> None:
    """Select the option starting with ``option`` in the selectbox ``label`` unless it is already selected."""
    box = page.get_by_role("combobox", name=label)
    if not box.input_value().startswith(option):
        box.click()
        page.get_by_role("option").filter(has_text=option).first.click()
        page.wait_for_function(
            "([label, option]) => document.querySelector(`input[aria-label='${label}']`).value.startsWith(option)",
            arg=[label, option],
        )
    assert box.input_value().startswith(option), f"{label}: {box.input_value()!r}"


def _save_screenshot(page, tmp_path: Path, name: str) -> Path:
    """A PNG of the viewport (Streamlit scrolls an inner container, not the page), at most MAX_PNG_BYTES."""
    from PIL import Image

    path = tmp_path / name
    page.screenshot(path=str(path))
    if path.stat().st_size > MAX_PNG_BYTES:  # photos: 256 dithered colours look the same at a third of the size
        with Image.open(path) as shot:
            rgb = shot.convert("RGB")
        palette = rgb.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)
    assert 0 < path.stat().st_size <= MAX_PNG_BYTES, (name, path.stat().st_size)
    if os.environ.get("INDAD_UPDATE_SCREENSHOTS") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(path, REPO / "docs" / name)
    return path


def test_train_browse_and_download(app_server, browser, datasets_root, tmp_path):
    import indad
    from indad.app.results_view import PER_PAGE
    from indad.data import list_images

    url, log = app_server
    n_test = len(list_images(datasets_root / "hazelnut_reduced" / "test", recursive=True))
    expected_maps = min(PER_PAGE, n_test)
    assert expected_maps > 0

    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, accept_downloads=True)
    page = context.new_page()
    page_errors, console_errors = [], []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)

    def context_note() -> str:
        return f"\nconsole errors: {console_errors}\nserver log:\n{tail(log)}"

    try:
        page.goto(url)
        sidebar = page.get_by_test_id("stSidebar")
        start = sidebar.get_by_role("button", name="Start")
        start.wait_for(timeout=PAGE_LOAD_S * 1000)  # the first run imports torch & co.

        assert sidebar.get_by_role("radiogroup").first.get_by_role("radio", name="Dataset on disk").is_checked()
        _choose(page, "Dataset", "hazelnut_reduced")
        _choose(page, "Method", "PatchCore")
        start.click()

        page.get_by_test_id("stAlertContentSuccess").filter(
            has_text="PatchCore on hazelnut_reduced: trained and scored in"
        ).wait_for(timeout=TRAIN_S * 1000)

        # the gallery: one row of image, anomaly map, overlay (, ground truth) per test image of the first page
        maps = (
            page.get_by_test_id("stImage")
            .filter(has=page.get_by_test_id("stImageCaption").get_by_text("anomaly map", exact=True))
            .locator("img")
        )
        page.wait_for_function(
            """n => [...document.querySelectorAll('[data-testid="stImage"]')]
                     .filter(e => e.querySelector('[data-testid="stImageCaption"]')?.innerText.trim() === 'anomaly map')
                     .length === n""",
            arg=expected_maps,
            timeout=60_000,
        )
        assert maps.count() == expected_maps
        # every picture of the page has loaded (naturalWidth > 0), not only the anomaly maps
        page.wait_for_function(
            """() => { const imgs = [...document.querySelectorAll('[data-testid="stImage"] img')];
                       return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
            timeout=30_000,
        )
        sizes = maps.evaluate_all("imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
        assert all(w > 0 and h > 0 for w, h in sizes), sizes
        captions = page.get_by_test_id("stImageCaption").all_inner_texts()
        assert {"image", "anomaly map", "overlay"} <= {c.strip() for c in captions}, captions

        # the script has finished: no running indicator, no traceback, no error message
        page.get_by_test_id("stStatusWidget").wait_for(state="detached", timeout=30_000)
        assert page.get_by_test_id("stException").count() == 0, page.get_by_test_id("stException").all_inner_texts()
        assert page.get_by_test_id("stAlertContentError").count() == 0, page.get_by_test_id(
            "stAlertContentError"
        ).all_inner_texts()

        # metrics table and histogram
        metrics = page.get_by_test_id("stDataFrame").first
        assert metrics.is_visible()
        assert page.get_by_role("heading", name="Metrics").is_visible()
        chart = page.get_by_test_id("stVegaLiteChart").first
        chart.locator("canvas, svg").first.wait_for(timeout=30_000)
        # the image threshold: the first slider of the main area (the sidebar has sliders of its own)
        threshold_text = page.get_by_test_id("stMain").get_by_test_id("stSliderThumbValue").first.inner_text().strip()

        _scroll_to_top(page.get_by_test_id("stAlertContentSuccess"))
        results_png = _save_screenshot(page, tmp_path, "app_results.png")
        _scroll_to_top(page.get_by_role("heading", name="Gallery"))
        gallery_png = _save_screenshot(page, tmp_path, "app_gallery.png")
        assert results_png.read_bytes() != gallery_png.read_bytes()

        # the model file carries the thresholds, the image one as set by the slider
        button = page.get_by_test_id("stDownloadButton").filter(has_text="Download the model (.indad)")
        with page.expect_download(timeout=60_000) as download_info:
            button.get_by_role("button").click()
        download = download_info.value
        assert download.failure() is None, download.failure()
        assert download.suggested_filename.endswith(".indad"), download.suggested_filename
        model_path = tmp_path / download.suggested_filename
        download.save_as(model_path)
        model = indad.load(model_path, device="cpu")
        assert model.thresholds is not None
        assert f"{model.thresholds.image:.4f}" == threshold_text

        # the other tab offers the model just trained, chosen already: only the images to score are asked for.
        page.get_by_role("tab", name="Score images").click()
        score_panel = page.get_by_role("tabpanel", name="Score images")
        assert score_panel.get_by_role("radio", name="The model trained in this session").is_checked()
        score_panel.get_by_text("Images to score", exact=True).wait_for(timeout=30_000)
        assert score_panel.get_by_text("Saved model (.indad)", exact=True).count() == 0

        assert page.get_by_test_id("stException").count() == 0
        assert not page_errors, page_errors
    except Exception as exc:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(tmp_path / "failure.png"))
        raise AssertionError(f"{exc}{context_note()}") from exc
    finally:
        context.close()
