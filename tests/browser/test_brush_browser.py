"""Brush and eraser in headless Chromium: strokes painted on a zoomed stage change the exported
mask exactly where they were drawn (the same pixels ui/brush.py paints for that stroke)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ui.brush import paint, parse_stroke

from .test_app_browser import TIMEOUT, TRUCK, engine, open_app, screen_xy, upload, wait_objects

pytestmark = pytest.mark.browser
__all__ = ["engine"]  # the module fixture, shared with test_app_browser


def tool(page) -> str | None:
    return page.evaluate("() => document.querySelector('[data-tool]')?.dataset.tool ?? null")


def drag(page, a: tuple[int, int], b: tuple[int, int], shot: Path | None = None) -> None:
    """Press at image pixel ``a``, move to ``b`` in one step, release: a stroke of 2 points
    (``shot``: a screenshot of the stroke drawn before its release)."""
    page.mouse.move(*screen_xy(page, a[0] + 0.5, a[1] + 0.5))
    page.mouse.down()
    page.mouse.move(*screen_xy(page, b[0] + 0.5, b[1] + 0.5), steps=1)
    assert page.locator("#sam-stage canvas.sam-ink").count() >= 1  # drawn while dragged
    if shot is not None:
        page.locator("#sam-stage").screenshot(path=str(shot))
    page.mouse.up()


def image_radius(page) -> float:
    """The tool's radius (screen px) in image pixels at the zoom shown."""
    return page.evaluate(
        """() => { const c = document.querySelector('#sam-stage .sam-canvas');
        return window.__samBrush.radius * +c.closest('.sam-stage').dataset.w
            / c.getBoundingClientRect().width; }"""
    )


def message_has(page, text: str) -> None:
    page.wait_for_selector(f"#sam-message :text('{text}')", timeout=TIMEOUT)


def test_brush_and_eraser_strokes_on_a_zoomed_stage_are_exported_as_painted(
    page, app_server, engine, screenshots
):
    open_app(page, app_server.url)
    upload(page, TRUCK)
    page.mouse.click(*screen_xy(page, 500.5, 375.5))
    page.wait_for_function(
        "document.querySelectorAll('#sam-cands .sam-cand').length === 3", timeout=TIMEOUT
    )
    # Keys typed into a text box stay there.
    page.click("#sam-label-name textarea, #sam-label-name input")
    page.keyboard.type("be")
    assert tool(page) is None
    page.mouse.move(*screen_xy(page, 500.5, 375.5))
    page.mouse.wheel(0, -500)
    page.wait_for_function(
        "+document.querySelector('#sam-stage .sam-stage').dataset.zoom > 1.5", timeout=TIMEOUT
    )
    page.mouse.click(5, 5)  # leave the text box
    page.keyboard.press("b")
    assert tool(page) == "brush"
    page.keyboard.press("b")  # the same key again: back to clicks
    assert tool(page) is None
    page.keyboard.press("b")
    small = page.evaluate("() => window.__samBrush.radius")
    page.keyboard.press("]")
    page.keyboard.press("]")
    assert page.evaluate("() => window.__samBrush.radius") > small

    brush = parse_stroke(
        {"mode": "brush", "points": [[520, 300], [600, 340]], "radius": image_radius(page)},
        (1200, 1800),
    )
    drag(page, (520, 300), (600, 340), shot=screenshots / "brush-stroke.png")
    assert page.evaluate("() => window.__samBrush.last.points") == [[520, 300], [600, 340]]
    message_has(page, "Brush stroke on the current mask")
    page.wait_for_selector("#sam-stage .sam-stage[data-painted]", timeout=TIMEOUT)

    page.keyboard.press("e")
    assert tool(page) == "erase"
    page.keyboard.press("[")
    eraser = parse_stroke(
        {"mode": "erase", "points": [[540, 310], [545, 330]], "radius": image_radius(page)},
        (1200, 1800),
    )
    drag(page, (540, 310), (545, 330), shot=screenshots / "eraser-stroke.png")
    message_has(page, "Eraser stroke on the current mask")
    page.locator("#sam-stage").screenshot(path=str(screenshots / "eraser-result.png"))
    page.keyboard.press("Escape")  # back to clicks; the prompt stays
    assert tool(page) is None
    assert page.locator("#sam-stage .sam-pt").count() == 1

    page.keyboard.press("Enter")
    wait_objects(page, 1)
    page.click("#sam-export-zip")
    link = page.wait_for_selector("#sam-downloads a[href]", timeout=TIMEOUT)
    href = link.get_attribute("href")
    data = page.request.get(href if href.startswith("http") else app_server.url + href).body()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        (obj,) = json.loads(zf.read("labels.json"))["objects"]
        exported = np.array(Image.open(io.BytesIO(zf.read(obj["mask"])))) > 0
    masks, _, _ = engine.predict(
        point_coords=np.array([[500, 375]]), point_labels=np.array([1]), multimask_output=True
    )
    expected = paint(paint(masks[0], brush), eraser)
    assert brush.radius > eraser.radius > 0
    assert not np.array_equal(expected, masks[0])
    np.testing.assert_array_equal(exported, expected)
    assert not page.js_errors, page.js_errors
