"""Segment everything in the real app: run it, accept a proposal by clicking on its mask and
another by its chip, add them as objects, see them in the object list, undo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sam import load_model
from sam.automatic import AutoMaskConfig, AutomaticMaskGenerator
from sam.image_io import load_image

from .test_app_browser import TIMEOUT, TRUCK, open_app, screen_xy, upload, wait_objects

pytestmark = pytest.mark.browser
# Segment everything decodes 48 candidates on an 1800×1200 photo: seconds, more on a busy CPU.
SLOW = 4 * TIMEOUT

# Random weights give small logits: these settings keep several proposals (see tests/ui).
SETTINGS = {
    "sam-pps": 4,
    "sam-pred-iou": 0,
    "sam-stability": 0.5,
    "sam-offset": 0.02,
    "sam-nms": 1,
}
CONFIG = AutoMaskConfig(
    points_per_side=4,
    pred_iou_thresh=0.0,
    stability_score_thresh=0.5,
    stability_score_offset=0.02,
    box_nms_thresh=1.0,
)


@pytest.fixture(scope="module")
def expected(tiny_checkpoint: Path) -> list[np.ndarray]:
    """What the app should propose for truck.jpg with SETTINGS (the engine's own answer)."""
    model = load_model(str(tiny_checkpoint), device="cpu")
    found = AutomaticMaskGenerator(model, CONFIG).generate(load_image(str(TRUCK)))
    assert len(found) >= 2
    return [p.segmentation for p in found]


def set_number(page, elem_id: str, value: float) -> None:
    """Type into a slider's number box; wait until the slider itself holds the value."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.wait_for(state="visible", timeout=TIMEOUT)
    box.fill(str(value))
    box.press("Tab")
    page.wait_for_function(
        "([id, v]) => Number(document.querySelector(`#${id} input[type=range]`).value) === v",
        arg=[elem_id, value],
        timeout=TIMEOUT,
    )


def accepted(page) -> list[int]:
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('#sam-proposals .sam-prop.sam-accepted'))
        .map(c => +c.dataset.index)"""
    )


def wait_accepted(page, indices: list[int]) -> None:
    page.wait_for_function(
        """want => JSON.stringify(Array.from(document.querySelectorAll(
        '#sam-proposals .sam-prop.sam-accepted')).map(c => +c.dataset.index)) === want""",
        arg=str(sorted(indices)).replace(" ", ""),
        timeout=TIMEOUT,
    )


def test_segment_everything_accept_and_add(page, app_server, expected, screenshots):
    open_app(page, app_server.url)
    upload(page, TRUCK)
    page.click("#sam-auto-settings .label-wrap")
    for elem_id, value in SETTINGS.items():
        set_number(page, elem_id, value)
    page.locator("#sam-min-area input").fill("0")
    page.locator("#sam-min-area input").press("Tab")
    page.click("#sam-auto-settings .label-wrap")  # fold the settings away again
    page.click("#sam-everything")
    page.wait_for_selector("#sam-stage .sam-stage[data-proposals]", timeout=SLOW)
    page.wait_for_selector("#sam-proposal-panel", state="visible", timeout=TIMEOUT)
    assert page.locator("#sam-proposals .sam-prop").count() == len(expected)
    assert "Reviewing proposals" in page.inner_text("#sam-stage .sam-review-banner")
    assert accepted(page) == []

    # A click on the image toggles the smallest proposal under the pointer (no SAM point).
    stack = np.stack(expected)
    areas = stack.sum(axis=(1, 2))
    ys, xs = np.nonzero(stack.any(0))
    y, x = int(ys[len(ys) // 3]), int(xs[len(xs) // 3])
    hits = np.flatnonzero(stack[:, y, x])
    target = int(hits[np.argmin(areas[hits])])
    page.mouse.click(*screen_xy(page, x + 0.5, y + 0.5))
    wait_accepted(page, [target])
    assert page.locator("#sam-stage .sam-pt").count() == 0
    # A chip in the panel toggles one too.
    other = next(i for i in range(len(expected)) if i != target)
    page.locator(f"#sam-proposals .sam-prop[data-index='{other}']").click()
    wait_accepted(page, [target, other])
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(screenshots / "proposals-review.png"))

    page.click("#sam-add-accepted")
    wait_objects(page, 2)
    page.wait_for_selector("#sam-proposal-panel", state="hidden", timeout=TIMEOUT)
    assert page.locator("#sam-stage .sam-stage[data-proposals]").count() == 0
    rows = page.inner_text("#sam-objects")
    assert "#1 object" in rows and "#2 object" in rows
    page.screenshot(path=str(screenshots / "proposals-added.png"))

    # Undo brings the proposals back, with the same two accepted.
    page.click("#sam-undo")
    wait_objects(page, 0)
    page.wait_for_selector("#sam-stage .sam-stage[data-proposals]", timeout=TIMEOUT)
    wait_accepted(page, [target, other])
    assert page.js_errors == []  # type: ignore[attr-defined]
