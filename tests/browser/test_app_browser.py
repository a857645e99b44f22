"""Drive the real app in headless Chromium like an annotator would, then check the export."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam import SamPredictor, load_model
from sam.image_io import load_image
from ui.models import default_model

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
TRUCK = REPO / "static" / "examples" / "truck.jpg"
TIMEOUT = 30_000


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> SamPredictor:
    predictor = SamPredictor(load_model(str(tiny_checkpoint), device="cpu"))
    predictor.set_image(load_image(str(TRUCK)))
    return predictor


def open_app(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#sam-stage .sam-stage", timeout=TIMEOUT)
    page.wait_for_selector("#sam-model-status .sam-ok", timeout=TIMEOUT)


def upload(page, path: Path) -> None:
    page.set_input_files("#sam-upload input[type=file]", str(path))
    page.wait_for_selector("#sam-stage .sam-canvas", timeout=TIMEOUT)
    page.wait_for_selector("#sam-stage .sam-busy", state="detached", timeout=TIMEOUT)


def screen_xy(page, x: float, y: float) -> tuple[float, float]:
    """Where original-image pixel (x, y) is on the screen (its centre for integer pixels)."""
    info = page.evaluate(
        """() => { const c = document.querySelector('#sam-stage .sam-canvas');
        const s = c.closest('.sam-stage'); const r = c.getBoundingClientRect();
        return {x: r.x, y: r.y, w: r.width, h: r.height, W: +s.dataset.w, H: +s.dataset.h}; }"""
    )
    return info["x"] + x * info["w"] / info["W"], info["y"] + y * info["h"] / info["H"]


def points(page) -> list[tuple[int, int, str]]:
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('#sam-stage .sam-pt:not(.sam-pending)'))
        .map(p => [+p.dataset.x, +p.dataset.y, p.classList.contains('sam-neg') ? 'neg' : 'pos'])"""
    )


def overlay_src(page) -> str | None:
    el = page.query_selector("#sam-stage .sam-overlay")
    return el.get_attribute("src") if el else None


def wait_points(page, n: int) -> None:
    page.wait_for_function(
        f"document.querySelectorAll('#sam-stage .sam-pt:not(.sam-pending)').length === {n}",
        timeout=TIMEOUT,
    )


def wait_objects(page, n: int) -> None:
    page.wait_for_function(
        f"document.querySelectorAll('#sam-objects .sam-obj').length === {n}", timeout=TIMEOUT
    )


def test_annotate_truck_end_to_end(page, app_server, engine, screenshots):
    open_app(page, app_server.url)
    page.screenshot(path=str(screenshots / "0-empty.png"))
    upload(page, TRUCK)
    assert "truck.jpg" in page.inner_text("#sam-stage .sam-hud")

    # Left click -> positive point exactly at the pixel under the pointer; overlay appears.
    page.mouse.click(*screen_xy(page, 500.5, 375.5))
    wait_points(page, 1)
    assert points(page) == [[500, 375, "pos"]]
    page.wait_for_selector("#sam-stage .sam-overlay", timeout=TIMEOUT)
    first = overlay_src(page)
    assert page.locator("#sam-cands .sam-cand").count() == 3

    # Right click -> negative point; the overlay changes.
    page.mouse.click(*screen_xy(page, 620.5, 300.5), button="right")
    wait_points(page, 2)
    assert points(page)[1] == [620, 300, "neg"]
    page.wait_for_function(
        "s => document.querySelector('#sam-stage .sam-overlay')?.src !== s", arg=first
    )
    # Shift+click is negative too.
    page.keyboard.down("Shift")
    page.mouse.click(*screen_xy(page, 100.5, 1000.5))
    page.keyboard.up("Shift")
    wait_points(page, 3)
    assert points(page)[2] == [100, 1000, "neg"]

    # Drag a box: it combines with the points.
    x0, y0 = screen_xy(page, 75, 275)
    x1, y1 = screen_xy(page, 1725, 850)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    page.wait_for_selector("#sam-stage .sam-box[data-box]", timeout=TIMEOUT)
    assert page.get_attribute("#sam-stage .sam-box[data-box]", "data-box") == "75,275,1725,850"
    assert len(points(page)) == 3
    page.screenshot(path=str(screenshots / "1-points-and-box.png"))

    # Esc clears the prompt.
    page.keyboard.press("Escape")
    wait_points(page, 0)
    page.wait_for_selector("#sam-stage .sam-box", state="detached", timeout=TIMEOUT)

    # One click -> three candidates; pick the second.
    page.mouse.click(*screen_xy(page, 500.5, 375.5))
    wait_points(page, 1)
    page.wait_for_function(
        "document.querySelectorAll('#sam-cands .sam-cand').length === 3", timeout=TIMEOUT
    )
    page.locator("#sam-cands .sam-cand").nth(1).click()
    page.wait_for_selector("#sam-cands .sam-cand.sam-selected[data-index='1']", timeout=TIMEOUT)
    page.screenshot(path=str(screenshots / "2-candidates.png"))

    # Enter accepts it with the default label.
    page.keyboard.press("Enter")
    wait_objects(page, 1)
    assert "#1 object" in page.inner_text("#sam-objects")

    # A second object with a new label.
    page.fill("#sam-label-name textarea, #sam-label-name input", "car")
    page.click("#sam-add-label")
    page.wait_for_selector("#sam-labels .sam-chip.sam-active:has-text('car')", timeout=TIMEOUT)
    page.mouse.click(*screen_xy(page, 1500.5, 500.5))
    wait_points(page, 1)
    page.click("#sam-accept")
    wait_objects(page, 2)
    assert "#2 car" in page.inner_text("#sam-objects")
    page.screenshot(path=str(screenshots / "3-two-objects.png"))

    # Undo takes the second object back to a prompt; redo restores it.
    page.mouse.click(10, 10)  # focus the page, not a text box
    page.keyboard.press("Control+z")
    wait_objects(page, 1)
    wait_points(page, 1)
    page.keyboard.press("Control+Shift+z")
    wait_objects(page, 2)

    # Export: the zip's PNGs equal the engine's masks for the same prompts.
    page.click("#sam-export-zip")
    link = page.wait_for_selector("#sam-downloads a[href]", timeout=TIMEOUT)
    href = link.get_attribute("href")
    url = href if href.startswith("http") else app_server.url + href
    data = page.request.get(url).body()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        meta = json.loads(zf.read("labels.json"))
        pngs = [np.array(Image.open(io.BytesIO(zf.read(o["mask"])))) for o in meta["objects"]]
        inst = np.array(Image.open(io.BytesIO(zf.read("instance_map.png"))))
    assert [o["label"] for o in meta["objects"]] == ["object", "car"]
    one, _, _ = engine.predict(
        point_coords=np.array([[500, 375]]), point_labels=np.array([1]), multimask_output=True
    )
    two, _, _ = engine.predict(
        point_coords=np.array([[1500, 500]]), point_labels=np.array([1]), multimask_output=True
    )
    np.testing.assert_array_equal(pngs[0], one[1].astype(np.uint8) * 255)  # the picked candidate
    np.testing.assert_array_equal(pngs[1], two[0].astype(np.uint8) * 255)
    assert inst.shape == (1200, 1800)
    assert np.array_equal(inst == 2, two[0])
    assert not page.js_errors, page.js_errors


def test_two_tabs_are_independent(browser, app_server):
    tabs = []
    for _ in range(2):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        open_app(tab, app_server.url)
        upload(tab, TRUCK)
        tabs.append(tab)
    a, b = tabs
    a.mouse.click(*screen_xy(a, 200.5, 200.5))
    wait_points(a, 1)
    a.keyboard.press("Enter")
    wait_objects(a, 1)
    b.mouse.click(*screen_xy(b, 900.5, 600.5))
    wait_points(b, 1)
    assert points(b) == [[900, 600, "pos"]]
    assert b.locator("#sam-objects .sam-obj").count() == 0
    assert points(a) == [] and a.locator("#sam-objects .sam-obj").count() == 1
    for tab in tabs:
        tab.context.close()


def test_offline_first_run_explains_the_model_problem(browser, app_launcher, tmp_path, screenshots):
    """The default hub model cannot be downloaded here: the page must say why and what to do."""
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    with app_launcher([], tmp_path / "app.log", env=env) as app:
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        page = context.new_page()
        page.goto(app.url)
        banner = page.wait_for_selector("#sam-model-status .sam-bad", timeout=TIMEOUT)
        text = banner.inner_text()
        assert default_model("cpu") in text and "--model" in text
        # The Model box the message points to is opened, its model picker in reach.
        page.wait_for_selector("#sam-model-choice input", state="visible", timeout=TIMEOUT)
        upload(page, TRUCK)  # the image still opens; clicks explain why nothing happens
        page.mouse.click(*screen_xy(page, 10.5, 10.5))
        page.wait_for_selector("#sam-message .sam-error:has-text('No model')", timeout=TIMEOUT)
        # The marker drawn at once for the click is gone with the server's answer.
        page.wait_for_selector("#sam-stage .sam-pt", state="detached", timeout=TIMEOUT)
        page.screenshot(path=str(screenshots / "4-offline.png"))
        context.close()


def test_drop_on_canvas_and_keyboard_shortcuts(page, app_server):
    open_app(page, app_server.url)
    payload = base64.b64encode(TRUCK.read_bytes()).decode("ascii")
    page.evaluate(
        """(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "dropped-truck.jpg", { type: "image/jpeg" }));
        document.querySelector("#sam-stage .sam-stage").dispatchEvent(
            new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
        }""",
        payload,
    )
    page.wait_for_selector("#sam-stage .sam-canvas", timeout=TIMEOUT)
    page.wait_for_selector("#sam-stage .sam-busy", state="detached", timeout=TIMEOUT)
    assert "dropped-truck.jpg" in page.inner_text("#sam-stage .sam-hud")

    # N toggles the click mode: a plain left click then adds a background point.
    page.keyboard.press("n")
    page.wait_for_selector("#sam-stage .sam-stage[data-mode='neg']", timeout=TIMEOUT)
    page.mouse.click(*screen_xy(page, 300.5, 300.5))
    wait_points(page, 1)
    assert points(page) == [[300, 300, "neg"]]
    page.keyboard.press("n")
    page.wait_for_selector("#sam-stage .sam-stage[data-mode='pos']", timeout=TIMEOUT)

    # Digits choose labels; Enter accepts with that label.
    page.keyboard.press("2")
    page.wait_for_selector("#sam-labels .sam-chip.sam-active[data-index='1']", timeout=TIMEOUT)
    page.mouse.click(*screen_xy(page, 900.5, 600.5))
    wait_points(page, 2)
    page.keyboard.press("Enter")
    wait_objects(page, 1)
    assert "#1 background" in page.inner_text("#sam-objects")

    # Object row buttons: hide, then delete; Ctrl+Z brings it back.
    page.click("#sam-objects .sam-obj button[data-action='hide']")
    page.wait_for_selector("#sam-objects .sam-obj.sam-hidden", timeout=TIMEOUT)
    page.click("#sam-objects .sam-obj button[data-action='delete']")
    wait_objects(page, 0)
    page.keyboard.press("Control+z")
    wait_objects(page, 1)
    assert not page.js_errors, page.js_errors


def test_focus_returns_to_the_stage_after_typing(page, app_server):
    """After typing in a text box, a click on the image gives the keys back to the stage:
    Esc clears the prompt instead of going to the box."""
    open_app(page, app_server.url)
    upload(page, TRUCK)
    page.click("#sam-label-name textarea, #sam-label-name input")
    page.keyboard.type("wheel")
    page.mouse.click(*screen_xy(page, 500.5, 375.5))
    wait_points(page, 1)
    page.keyboard.press("Escape")
    wait_points(page, 0)
    assert not page.js_errors


def test_clicks_keep_image_coordinates_when_zoomed_and_panned(page, app_server):
    """The wheel zooms around the pointer; at every zoom (and after a middle-drag pan) a click
    lands on the image pixel under the pointer; 0 fits the image again."""
    open_app(page, app_server.url)
    upload(page, TRUCK)
    zooms = []
    # Nearby pixels, so each stays in view as the zoom grows around the previous one.
    for n, (x, y) in enumerate([(500, 375), (530, 360), (545, 392)], start=1):
        page.mouse.move(*screen_xy(page, x + 0.5, y + 0.5))
        page.mouse.wheel(0, -400)
        page.wait_for_function(
            f"+document.querySelector('#sam-stage .sam-stage').dataset.zoom > {max(zooms or [1])}"
        )
        zooms.append(float(page.get_attribute("#sam-stage .sam-stage", "data-zoom")))
        page.mouse.click(*screen_xy(page, x + 0.5, y + 0.5))
        wait_points(page, n)
        assert points(page)[-1] == [x, y, "pos"]
    assert zooms[2] > zooms[1] > zooms[0] > 1
    # Middle-drag pans the zoomed image; clicks still map to the pixel under the pointer.
    before = screen_xy(page, 545.5, 392.5)
    page.mouse.move(700, 500)
    page.mouse.down(button="middle")
    page.mouse.move(640, 470, steps=3)
    page.mouse.up(button="middle")
    after = screen_xy(page, 545.5, 392.5)
    assert (round(after[0] - before[0]), round(after[1] - before[1])) == (-60, -30)
    page.mouse.click(*screen_xy(page, 548.5, 395.5))
    wait_points(page, 4)
    assert points(page)[-1] == [548, 395, "pos"]
    page.keyboard.press("0")
    assert page.get_attribute("#sam-stage .sam-stage", "data-zoom") == "1.0000"
    assert not page.js_errors
