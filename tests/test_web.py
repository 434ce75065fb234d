"""The web page in a real headless Chromium (Playwright), against a real ``ferkit serve``.

Uses the system's Chromium (``apt-get install chromium``), never a browser that Playwright would
download. With FERKIT_UPDATE_DOCS=1 it saves the screenshot docs/web-page.png for the README.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import REPO
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "web-page.png"

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install playwright)")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as pw:
        yield pw


def launch(playwright, *extra_args: str):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args],
                                      headless=True)


@pytest.fixture(scope="module")
def page(playwright, ferkit_server):
    browser = launch(playwright)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
    page.goto(ferkit_server.url + "/")
    page.errors = errors
    yield page
    browser.close()


def upload_and_wait(page, path: Path) -> None:
    page.locator("#results").evaluate("el => { el.dataset.state = 'idle'; }")
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#results[data-state='done'], #results[data-state='error']", timeout=120_000)


def parse_rgb(css: str) -> tuple[int, int, int]:
    """'rgb(247, 107, 21)' -> (247, 107, 21)."""
    return tuple(int(v) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])


def canvas_pixel(page, x: int, y: int) -> tuple[int, int, int]:
    return tuple(page.evaluate(
        "([x, y]) => Array.from(document.getElementById('canvas').getContext('2d')"
        ".getImageData(x, y, 1, 1).data.slice(0, 3))", [x, y]))


def test_page_loads_with_model_info_and_no_errors(page) -> None:
    page.wait_for_function("!document.getElementById('model').textContent.includes('loading')")
    assert page.text_content("#model").startswith("model: ")
    assert page.errors == []


def test_page_header_shows_the_served_models_purpose_and_card_figures(page) -> None:
    """The header carries what `default` is for and its figures, as its card has them."""
    page.wait_for_selector("#model-figures:not([hidden]) [data-figure='ferplus']")
    card = json.loads((REPO / "ferkit" / "weights" / "default.json").read_text())
    scores, speed = card["figures"]["by_prior"]["balanced"], card["figures"]["speed"]
    assert page.text_content("#model") == f"model: default: {card['purpose']}"
    shown = {key: page.text_content(f"#model-figures [data-figure='{key}'] strong")
             for key in ("ferplus", "expw", "fer2013", "params", "speed")}
    assert shown == {
        "ferplus": f"{scores['ferplus_test_accuracy']:.2%} / {scores['ferplus_test_macro_f1']:.3f}",
        "expw": f"{scores['expw_dev_end_to_end_accuracy']:.2%} / "
                f"{scores['expw_dev_end_to_end_macro_f1']:.3f}",
        "fer2013": f"{scores['fer2013_test_accuracy']:.2%}",
        "params": f"{card['metrics']['params']:,d}",
        "speed": f"{speed['crops_per_s']:,.0f}",
    }
    assert page.get_attribute("#model-figures [data-figure='speed']", "title") == speed["on"]
    assert "balanced prior" in page.get_attribute("#model-figures", "title")
    assert page.errors == []


def test_uploading_the_astronaut_boxes_one_happy_face(page, astronaut_png: Path) -> None:
    upload_and_wait(page, astronaut_png)
    assert page.get_attribute("#results", "data-state") == "done", page.text_content("#status")
    assert page.get_attribute("#results", "data-faces") == "1"
    assert page.get_attribute("#canvas", "data-boxes") == "1"
    assert page.get_attribute("#canvas", "data-landmarks") == "5"  # YuNet's five points, drawn as dots
    width, height = page.evaluate("[document.getElementById('canvas').width, "
                                  "document.getElementById('canvas').height]")
    assert width > 300 and height > 300  # the photo itself, not the empty canvas
    face = page.locator(".face").first
    assert len(page.locator(".face .bars li").all()) == 7
    label = face.get_attribute("data-label")
    # The box is really drawn: the middle of its left edge has the colour of the face's swatch.
    x, y, w, h = (int(v) for v in face.get_attribute("data-box").split(","))
    swatch = face.locator(".swatch").evaluate("el => getComputedStyle(el).backgroundColor")
    assert canvas_pixel(page, x, y + h // 2) == parse_rgb(swatch)
    assert label == "happy", f"top label is {label!r}"
    assert page.text_content(".face .label") == "happy"
    assert page.get_attribute("#results", "data-top-label") == "happy"
    assert page.errors == []
    if os.environ.get("FERKIT_UPDATE_DOCS") == "1":  # the README's screenshot, from a passing run
        page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_the_explanation_toggle_overlays_the_map_on_the_face(page, astronaut_png: Path,
                                                              tmp_path: Path) -> None:
    """Ticked, the page asks for ?explain=true and tints the mouth (what a happy label relies on)
    but not the forehead; unticked, the photo is plain again."""
    photo = tmp_path / "explain-me.png"  # a new name: the same file again fires no change event
    photo.write_bytes(astronaut_png.read_bytes())
    upload_and_wait(page, photo)
    mouth, forehead = (224, 145), (224, 80)  # YuNet's mouth corners' middle; well above the eyes
    plain_mouth, plain_forehead = canvas_pixel(page, *mouth), canvas_pixel(page, *forehead)
    page.locator("#results").evaluate("el => { el.dataset.state = 'idle'; }")
    page.check("#explain")
    page.wait_for_selector("#results[data-state='done']", timeout=120_000)
    assert page.get_attribute("#canvas", "data-heatmaps") == "1"
    tinted = canvas_pixel(page, *mouth)
    mouth_change = sum(abs(a - b) for a, b in zip(tinted, plain_mouth))
    forehead_change = sum(abs(a - b) for a, b in zip(canvas_pixel(page, *forehead), plain_forehead))
    # The tint's strength follows the drop in log-odds, which the photo calibration's temperature scales.
    assert mouth_change > 40 and forehead_change < 20 and mouth_change > 3 * forehead_change, (
        tinted, plain_mouth, forehead_change)
    page.locator("#results").evaluate("el => { el.dataset.state = 'idle'; }")
    page.uncheck("#explain")
    page.wait_for_selector("#results[data-state='done']", timeout=120_000)
    assert page.get_attribute("#canvas", "data-heatmaps") == "0"
    assert canvas_pixel(page, *mouth) == plain_mouth
    assert page.errors == []


def test_the_prior_selector_asks_for_that_prior(page, astronaut_png: Path, tmp_path: Path) -> None:
    """Choosing a prior re-sends the photo with ?prior=...; the service's default sends none."""
    photo = tmp_path / "prior-me.png"
    photo.write_bytes(astronaut_png.read_bytes())
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/v1/predict" in request.url else None)
    upload_and_wait(page, photo)
    page.locator("#results").evaluate("el => { el.dataset.state = 'idle'; }")
    page.select_option("#prior", "natural")
    page.wait_for_selector("#results[data-state='done']", timeout=120_000)
    assert "prior=" not in asked[0] and asked[-1].endswith("/v1/predict?prior=natural"), asked
    assert page.get_attribute("#results", "data-top-label") == "happy"
    assert page.errors == []


def test_a_photo_without_a_face_says_so(page, tmp_path: Path) -> None:
    path = tmp_path / "gradient.png"
    Image.linear_gradient("L").resize((300, 200)).save(path)
    upload_and_wait(page, path)
    assert page.get_attribute("#results", "data-faces") == "0"
    assert page.locator(".face").count() == 0
    assert page.text_content("#results .empty")


def test_a_file_that_is_not_an_image_shows_the_reason(page, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a picture")
    upload_and_wait(page, path)
    assert page.get_attribute("#results", "data-state") == "error"
    assert "422" in page.text_content("#status")
    assert "error" in (page.get_attribute("#status", "class") or "")


def test_webcam_sends_live_frames(playwright, ferkit_server) -> None:
    """Chromium's fake camera (a synthetic test pattern) stands in for a webcam."""
    frames_sent = ("performance.getEntriesByType('resource')"
                   ".filter(e => e.name.endsWith('/v1/predict')).length")
    browser = launch(playwright, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
    try:
        page = browser.new_page()
        page.goto(ferkit_server.url + "/")
        page.click("#webcam")
        page.wait_for_function(f"{frames_sent} >= 3", timeout=60_000)
        assert page.text_content("#status").startswith("Webcam: live"), page.text_content("#status")
        assert page.get_attribute("#results", "data-state") == "done"
        page.click("#webcam")  # stop
        assert page.text_content("#webcam") == "Start webcam"
        sent = page.evaluate(frames_sent)
        page.wait_for_timeout(1000)
        assert page.evaluate(frames_sent) <= sent + 1  # stopped: at most the frame in flight
    finally:
        browser.close()
