"""The page at common screen sizes: centred on a wide monitor, and the zoom read-out never
covers the line under the image that names it and says what a click does."""

from __future__ import annotations

import shutil

import pytest

from .test_app_browser import TRUCK, open_app, upload

pytestmark = pytest.mark.browser


@pytest.fixture
def sized_page(browser, request):
    width, height = request.param
    context = browser.new_context(viewport={"width": width, "height": height})
    yield context.new_page()
    context.close()


@pytest.mark.parametrize("sized_page", [(1920, 1080), (2560, 1440)], indirect=True)
def test_wide_screen_centres_the_page(sized_page, app_server, screenshots):
    page = sized_page
    open_app(page, app_server.url)
    gaps = page.evaluate(
        """() => { const r = document.querySelector('.gradio-container').getBoundingClientRect();
        return [r.left, document.documentElement.clientWidth - r.right]; }"""
    )
    width = page.viewport_size["width"]
    page.screenshot(path=str(screenshots / f"wide-{width}.png"))
    left, right = gaps
    assert left > 50, f"the page is not centred on a {width} px screen: gaps {gaps}"
    assert abs(left - right) <= 2, f"the page is not centred on a {width} px screen: gaps {gaps}"


@pytest.mark.parametrize("sized_page", [(1280, 720), (1024, 768), (900, 700)], indirect=True)
def test_zoom_read_out_does_not_cover_the_image_line(sized_page, app_server, screenshots):
    page = sized_page
    open_app(page, app_server.url)
    upload(page, TRUCK)
    page.wait_for_selector("#sam-stage .sam-zoom", timeout=30_000)
    overlaps = page.evaluate(
        """() => {
        const badge = document.querySelector('#sam-stage .sam-zoom').getBoundingClientRect();
        const range = document.createRange();
        range.selectNodeContents(document.querySelector('#sam-stage .sam-hud'));
        return Array.from(range.getClientRects()).filter(r => r.width > 0 &&
            r.left < badge.right && r.right > badge.left &&
            r.top < badge.bottom && r.bottom > badge.top).length; }"""
    )
    width = page.viewport_size["width"]
    page.screenshot(path=str(screenshots / f"zoom-read-out-{width}.png"))
    assert overlaps == 0, f"the zoom read-out covers the text under the image at {width} px"


def cut_off(page) -> list[str]:
    """The Segment everything button's label and the Find box's hint, where either is wider
    than its box (the hint shows how to write several names: "dog. cat.")."""
    return page.evaluate(
        """() => {
        const out = [];
        const button = document.querySelector('#sam-everything');
        if (button.scrollWidth > button.clientWidth + 1) out.push(button.innerText);
        const box = document.querySelector('#sam-find-text input, #sam-find-text textarea');
        const style = getComputedStyle(box);
        const ctx = document.createElement('canvas').getContext('2d');
        ctx.font = style.font;
        const pad = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
        const room = box.clientWidth - pad;
        if (ctx.measureText(box.placeholder).width > room) out.push(box.placeholder);
        return out; }"""
    )


@pytest.mark.parametrize("sized_page", [(1920, 1080), (1280, 720)], indirect=True)
def test_find_hint_and_segment_everything_fit(sized_page, app_server):
    open_app(sized_page, app_server.url)
    assert cut_off(sized_page) == []


def test_find_hint_and_segment_everything_fit_a_folder_project_on_a_laptop(
    browser, app_launcher, example_photos, tiny_checkpoint, tmp_path, screenshots
):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(example_photos / "dog.jpg", folder)
    args = ["--images", str(folder), "--model", str(tiny_checkpoint), "--device", "cpu"]
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    with app_launcher(args, tmp_path / "app.log") as app:
        page.goto(app.url)
        page.wait_for_selector("#sam-model-status .sam-ok", timeout=30_000)
        page.wait_for_selector("#sam-project", timeout=30_000)
        page.screenshot(path=str(screenshots / "find-row-laptop.png"))
        assert cut_off(page) == []
    context.close()
