"""A folder project on a 1280x720 laptop screen: the image stays in sight while the candidates,
the objects and the export are used; the labels panel says what "background" is."""

from __future__ import annotations

import pytest

from .test_app_browser import TIMEOUT, screen_xy, wait_objects, wait_points
from .test_project_browser import wait_image

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 1280, 720


def box(page, selector: str) -> dict[str, float]:
    return page.locator(selector).first.bounding_box()


def assert_in_view(b: dict[str, float], what: str) -> None:
    inside = b["x"] >= 0 and b["y"] >= 0
    inside = inside and b["x"] + b["width"] <= WIDTH and b["y"] + b["height"] <= HEIGHT
    assert inside, f"{what} is outside the 1280x720 viewport: {b}"


def test_laptop_screen_keeps_the_image_in_sight(
    browser, app_launcher, folder, tiny_checkpoint, tmp_path, screenshots
):
    args = ["--images", str(folder), "--model", str(tiny_checkpoint), "--device", "cpu"]
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    with app_launcher(args, tmp_path / "app.log") as app:
        page.goto(app.url)
        page.wait_for_selector("#sam-model-status .sam-ok", timeout=TIMEOUT)
        wait_image(page, "dog.jpg")
        hint = page.inner_text("#sam-label-hint")
        assert "background" in hint and "not a negative click" in hint
        page.mouse.click(*screen_xy(page, 400.5, 267.5))
        wait_points(page, 1)
        page.wait_for_selector("#sam-cands .sam-cand", timeout=TIMEOUT)
        stage = box(page, "#sam-stage .sam-canvas")
        assert_in_view(stage, "the image")
        assert stage["height"] >= 300  # still a usable image
        for i in range(page.locator("#sam-cands .sam-cand").count()):
            assert_in_view(
                page.locator("#sam-cands .sam-cand").nth(i).bounding_box(), "a candidate"
            )
        page.screenshot(path=str(screenshots / "laptop-1-candidates.png"))
        page.keyboard.press("Enter")
        wait_objects(page, 1)
        # The objects and the export are reached by scrolling their own column: the image
        # does not move.
        for selector in ("#sam-objects .sam-obj", "#sam-export-zip", "#sam-export-project"):
            page.locator(selector).first.scroll_into_view_if_needed()
            assert_in_view(box(page, selector), selector)
            assert box(page, "#sam-stage .sam-canvas") == stage
        page.click("#sam-export-zip")
        page.wait_for_selector("#sam-downloads a[href]", timeout=TIMEOUT)
        assert box(page, "#sam-stage .sam-canvas") == stage  # the download link: same
        page.screenshot(path=str(screenshots / "laptop-2-export.png"))
    assert not errors, errors
