"""A folder project in the real app: annotate, move between images, mark done, then kill -9
the server mid-session and restart it: every accepted object is still there, and the
restarted app takes embeddings from the disk cache instead of encoding again."""

from __future__ import annotations

import signal

import pytest
from project_app import NAMES

from sam.dataset.store import AnnotationStore

from .test_app_browser import TIMEOUT, screen_xy, wait_objects, wait_points

pytestmark = pytest.mark.browser


def open_project(page, url: str, name: str) -> None:
    page.goto(url)
    page.wait_for_selector("#sam-model-status .sam-ok", timeout=TIMEOUT)
    wait_image(page, name)


def wait_image(page, name: str) -> None:
    """The stage shows ``name``, encoded (no busy veil)."""
    page.wait_for_function(
        "n => (document.querySelector('#sam-stage .sam-hud')?.textContent || '').startsWith(n)",
        arg=name,
        timeout=TIMEOUT,
    )
    page.wait_for_selector("#sam-stage .sam-busy", state="detached", timeout=TIMEOUT)


def annotate(page, x: float, y: float, n_after: int) -> None:
    page.mouse.click(*screen_xy(page, x, y))
    wait_points(page, 1)
    page.keyboard.press("Enter")
    wait_objects(page, n_after)


def test_folder_annotate_navigate_done_then_kill_and_resume(
    browser, app_launcher, folder, tiny_checkpoint, tmp_path, screenshots
):
    args = ["--images", str(folder), "--model", str(tiny_checkpoint), "--device", "cpu"]
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    with app_launcher(args, tmp_path / "first.log") as app:
        open_project(page, app.url, "dog.jpg")
        assert page.locator("#sam-gallery .sam-img").count() == 3
        assert "0 of 3 done" in page.inner_text("#sam-progress")
        annotate(page, 300.5, 200.5, 1)
        page.wait_for_selector("#sam-gallery .sam-current:has-text('1 obj')", timeout=TIMEOUT)
        # The neighbour is encoded in the background, and the page says so.
        page.wait_for_selector("#sam-prefetch .sam-ready", timeout=TIMEOUT)
        page.screenshot(path=str(screenshots / "project-1-annotated.png"))

        page.keyboard.press(".")  # next image
        wait_image(page, "dogs.jpg")
        wait_objects(page, 0)
        page.keyboard.press(",")  # and back: the object is there
        wait_image(page, "dog.jpg")
        wait_objects(page, 1)
        page.keyboard.press("Control+z")  # and so is the image's undo history
        wait_objects(page, 0)
        page.keyboard.press("Control+Shift+z")
        wait_objects(page, 1)
        page.keyboard.press("Shift+D")  # mark done, stay on the image
        page.wait_for_selector("#sam-progress:has-text('1 of 3 done')", timeout=TIMEOUT)
        page.wait_for_selector("#sam-gallery .sam-current.sam-st-done", timeout=TIMEOUT)
        assert page.inner_text("#sam-stage .sam-hud").startswith("dog.jpg")
        page.screenshot(path=str(screenshots / "project-2-done.png"))

        page.keyboard.press("d")  # done (already) and on to the next image not done
        wait_image(page, "dogs.jpg")
        assert "1 of 3 done" in page.inner_text("#sam-progress")
        annotate(page, 500.5, 300.5, 1)
        page.wait_for_selector("#sam-prefetch .sam-ready", timeout=TIMEOUT)  # truck.jpg too
        app.proc.send_signal(signal.SIGKILL)  # no shutdown, no flush: the commit must be done
        app.proc.wait(timeout=15)
    assert "Embedding of dogs.jpg from memory" in app.log_text()  # prefetched, not encoded

    with AnnotationStore.for_folder(folder) as store:
        assert [len(store.objects(store.image_id(n))) for n in NAMES] == [1, 1, 0]

    with app_launcher(args, tmp_path / "second.log") as app:
        open_project(page, app.url, "dogs.jpg")  # resumes at the first image not done
        wait_objects(page, 1)
        assert "1 of 3 done" in page.inner_text("#sam-progress")
        page.click("#sam-gallery .sam-img[data-id='1']")
        wait_image(page, "dog.jpg")
        wait_objects(page, 1)
        page.wait_for_selector("#sam-done:has-text('Reopen')", timeout=TIMEOUT)
        page.screenshot(path=str(screenshots / "project-3-restarted.png"))
        page.click("#sam-done-next")  # done already; opens the next image not done
        wait_image(page, "dogs.jpg")
        wait_objects(page, 1)
        log = app.log_text()
    # dogs.jpg from the disk cache; dog.jpg was read from there by the background prefetch.
    assert "Embedding of dogs.jpg from disk" in log and "Embedding of dog.jpg from memory" in log
    assert "Encoded" not in log  # the restarted app never ran the encoder
    assert not errors, errors
    context.close()
