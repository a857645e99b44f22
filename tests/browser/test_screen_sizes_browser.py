"""The page at common screen sizes: centred on a wide monitor."""

from __future__ import annotations

import pytest

from .test_app_browser import open_app

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
