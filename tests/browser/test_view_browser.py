"""Zoom keys, pinch zoom and a crisp overlay in the real app (headless Chromium)."""

from __future__ import annotations

import pytest

from .test_app_browser import (
    REPO,
    TIMEOUT,
    TRUCK,
    open_app,
    points,
    screen_xy,
    upload,
    wait_points,
)

pytestmark = pytest.mark.browser

DOG = REPO / "static" / "examples" / "dog.jpg"


def canvas_box(page) -> dict[str, float]:
    return page.evaluate(
        """() => { const c = document.querySelector('#sam-stage .sam-canvas');
        const r = c.getBoundingClientRect(); const s = c.closest('.sam-stage');
        return {x: r.x, y: r.y, w: r.width, h: r.height, W: +s.dataset.w, H: +s.dataset.h,
                zoom: +s.dataset.zoom}; }"""
    )


def overlay_rendering(page) -> str:
    return page.evaluate(
        "() => getComputedStyle(document.querySelector('#sam-stage .sam-overlay')).imageRendering"
    )


def zoom_readout(page) -> str:
    return page.locator("#sam-stage .sam-zoom").inner_text()


def click_at(page, x: int, y: int, n: int) -> None:
    page.mouse.click(*screen_xy(page, x + 0.5, y + 0.5))
    wait_points(page, n)
    assert points(page)[-1] == [x, y, "pos"]


def test_shift_1_is_100_percent_and_the_zoomed_overlay_stays_crisp(page, app_server):
    open_app(page, app_server.url)
    upload(page, TRUCK)
    click_at(page, 900, 600, 1)
    page.wait_for_selector("#sam-stage .sam-overlay", timeout=TIMEOUT)
    fit = canvas_box(page)
    assert fit["w"] < fit["W"]  # the 1800 px photo is shown smaller to fit
    assert overlay_rendering(page) == "auto"  # shown at most at its own size: smooth
    page.keyboard.press("Shift+1")  # by key place (Digit1): one image pixel per screen pixel
    one = canvas_box(page)
    assert one["w"] == pytest.approx(one["W"], abs=0.5)
    assert one["h"] == pytest.approx(one["H"], abs=0.5)
    # The middle of the stage stays where it was.
    assert one["x"] + one["w"] / 2 == pytest.approx(fit["x"] + fit["w"] / 2, abs=1)
    assert zoom_readout(page) == "100 %"
    assert overlay_rendering(page) == "pixelated"  # the 1280 px overlay, upscaled: sharp
    assert (
        page.evaluate(
            "() => getComputedStyle(document.querySelector('#sam-stage .sam-base')).imageRendering"
        )
        == "auto"
    )  # the photo stays smooth
    click_at(page, 920, 610, 2)  # clicks land on the pixel under the pointer at 100 % too
    assert canvas_box(page)["w"] == pytest.approx(one["W"], abs=0.5)  # a render keeps the zoom
    page.keyboard.press("1")  # 1 still chooses the first label, without zooming
    assert canvas_box(page)["w"] == pytest.approx(one["W"], abs=0.5)
    page.keyboard.press("0")
    assert canvas_box(page)["w"] == pytest.approx(fit["w"], abs=0.5)
    assert "Shift+1 100 %" in page.locator(".sam-keys").first.inner_text()  # documented
    assert overlay_rendering(page) == "auto"
    assert not page.js_errors, page.js_errors


def test_100_percent_is_one_image_pixel_per_device_pixel_on_a_hidpi_screen(
    browser, app_server, screenshots
):
    """At devicePixelRatio 2 a CSS pixel is two screen pixels: 100 % shows the 1800 px photo
    900 CSS px wide (1800 screen pixels), its corner on a whole screen pixel, and says so."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, device_scale_factor=2)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        open_app(page, app_server.url)
        upload(page, TRUCK)
        click_at(page, 900, 600, 1)
        page.wait_for_selector("#sam-stage .sam-overlay", timeout=TIMEOUT)
        fit = canvas_box(page)
        assert zoom_readout(page) == f"{round(100 * 2 * fit['w'] / fit['W'])} %"
        page.keyboard.press("Shift+1")
        one = canvas_box(page)
        assert one["w"] == pytest.approx(one["W"] / 2, abs=0.5)
        assert one["h"] == pytest.approx(one["H"] / 2, abs=0.5)
        assert one["x"] + one["w"] / 2 == pytest.approx(fit["x"] + fit["w"] / 2, abs=1)
        # The photo's corner sits on a screen pixel: its pixels are copied, not resampled.
        assert 2 * one["x"] == pytest.approx(round(2 * one["x"]), abs=0.01)
        assert 2 * one["y"] == pytest.approx(round(2 * one["y"]), abs=0.01)
        assert zoom_readout(page) == "100 %"
        # The 1280 px overlay is shown on 1800 screen pixels: drawn as sharp squares.
        assert overlay_rendering(page) == "pixelated"
        click_at(page, 920, 610, 2)  # clicks land on the pixel under the pointer
        page.screenshot(path=str(screenshots / "zoom_100_dpr2.png"))
        page.keyboard.press("0")
        assert canvas_box(page)["w"] == pytest.approx(fit["w"], abs=0.5)

        # An 800 px photo at 100 % is 400 CSS px wide, smaller than it is fitted; the wheel
        # zooms in from there instead of jumping back to the fit.
        page.close()
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        open_app(page, app_server.url)
        upload(page, DOG)
        fit = canvas_box(page)
        page.keyboard.press("Shift+1")
        one = canvas_box(page)
        assert one["w"] == pytest.approx(400, abs=0.5) and one["w"] < fit["w"]
        assert zoom_readout(page) == "100 %"
        page.mouse.move(one["x"] + one["w"] / 2, one["y"] + one["h"] / 2)
        page.mouse.wheel(0, -100)
        page.wait_for_function(
            f"+document.querySelector('#sam-stage .sam-stage').dataset.zoom > {one['zoom']}",
            timeout=TIMEOUT,
        )
        assert canvas_box(page)["zoom"] < 1
        assert not errors, errors
    finally:
        context.close()


def test_pinch_zooms_the_stage_not_the_page(page, app_server):
    """A trackpad pinch (ctrl+wheel in Chromium) and a two-finger touch pinch zoom the stage
    around the pinch centre; the page itself does not zoom, and clicks still land."""
    open_app(page, app_server.url)
    upload(page, TRUCK)
    page.evaluate(
        """() => { window.__ctrlWheels = [];
        window.addEventListener('wheel', e => window.__ctrlWheels.push(
            [e.ctrlKey, e.defaultPrevented]), {passive: true}); }"""
    )
    x, y = screen_xy(page, 700.5, 500.5)
    page.mouse.move(x, y)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -60)
    page.keyboard.up("Control")
    page.wait_for_function(
        "+document.querySelector('#sam-stage .sam-stage').dataset.zoom > 1.5", timeout=TIMEOUT
    )
    assert page.evaluate("window.__ctrlWheels") == [[True, True]]  # the browser's zoom: off
    assert page.evaluate("window.visualViewport.scale") == 1
    after = screen_xy(page, 700.5, 500.5)  # the pinch centre stays put
    assert after == pytest.approx((x, y), abs=1)
    click_at(page, 700, 500, 1)

    # Two fingers spread apart around image pixel (680, 520).
    page.keyboard.press("0")
    cdp = page.context.new_cdp_session(page)
    cx, cy = screen_xy(page, 680.5, 520.5)

    def touch(kind: str, spread: float) -> None:
        fingers = [{"x": cx - spread, "y": cy, "id": 1}, {"x": cx + spread, "y": cy, "id": 2}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": fingers})

    touch("touchStart", 20)
    for spread in (30, 45, 60):
        touch("touchMove", spread)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    zoom = canvas_box(page)["zoom"]
    assert zoom == pytest.approx(3.0, rel=0.05)  # fingers 40 -> 120 px apart
    assert screen_xy(page, 680.5, 520.5) == pytest.approx((cx, cy), abs=1)
    wait_points(page, 1)  # the pinch placed no point
    click_at(page, 690, 525, 2)
    # With the brush on, the first finger's stroke becomes the pinch too: nothing is painted.
    page.keyboard.press("0")
    page.keyboard.press("b")
    cx, cy = screen_xy(page, 680.5, 520.5)
    touch("touchStart", 20)
    touch("touchMove", 40)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    assert canvas_box(page)["zoom"] == pytest.approx(2.0, rel=0.05)
    assert page.evaluate("window.__samBrush.last") is None
    assert not page.js_errors, page.js_errors
