"""Hostile label names and colours, from a ``--labels`` file and from a database written by
another program, in the real page: no script runs, nothing is fetched from elsewhere, and the
names show as text. A labels file with a bad colour stops the app with the line to fix."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from sam.dataset.store import AnnotationStore
from sam.image_io import load_image

from .conftest import REPO
from .test_app_browser import TIMEOUT, wait_objects
from .test_project_browser import wait_image

pytestmark = pytest.mark.browser

NAMES = ('x" onmouseover="alert(1)', "<img src=x onerror=alert(2)>")
OUTSIDE = "red;background-image:url(http://example.invalid/x.png)"
COLORS = ('#abc" onmouseover="alert(3)', '#fff"><img src=x onerror=alert(4)>', OUTSIDE)


@pytest.fixture
def folder(tmp_path: Path, example_photos: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(example_photos / "dog.jpg", images / "dog.jpg")
    return images


def hostile_database(folder: Path) -> None:
    """A project database where another program wrote markup and CSS into the colours."""
    with AnnotationStore.for_folder(folder) as store:
        image_id = store.image_id("dog.jpg")
        dog = store.ensure_label("dog")
        mask = np.zeros(load_image(folder / "dog.jpg").shape[:2], dtype=bool)
        mask[100:300, 200:500] = True
        store.add_object(image_id, mask, dog.id)
        db = store.path
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE labels SET color = ? WHERE name = 'dog'", (COLORS[0],))
        conn.execute("UPDATE objects SET color = ?", (COLORS[2],))


def test_labels_file_with_a_bad_colour_stops_the_app(folder, tmp_path, tiny_checkpoint):
    labels = tmp_path / "labels.txt"
    labels.write_text(f"cat\ndog,{COLORS[1]}\n")
    args = ["--images", str(folder), "--labels", str(labels), "--model", str(tiny_checkpoint)]
    done = subprocess.run(
        [sys.executable, "app.py", *args, "--port", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "labels.txt, line 2:" in done.stderr and "is not a colour" in done.stderr


def test_hostile_labels_run_no_script_and_fetch_nothing(
    browser, app_launcher, folder, tiny_checkpoint, tmp_path, screenshots
):
    hostile_database(folder)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{name}\n" for name in NAMES))
    args = ["--images", str(folder), "--labels", str(labels), "--model", str(tiny_checkpoint)]
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    dialogs: list[str] = []
    hosts: set[str] = set()

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda request: hosts.add(urlparse(request.url).hostname or ""))
    with app_launcher([*args, "--device", "cpu"], tmp_path / "app.log") as app:
        page.goto(app.url)
        page.wait_for_selector("#sam-model-status .sam-ok", timeout=TIMEOUT)
        wait_image(page, "dog.jpg")
        wait_objects(page, 1)
        targets = page.locator("#sam-labels .sam-chip, #sam-labels .sam-swatch, #sam-objects *")
        for i in range(targets.count()):
            if targets.nth(i).is_visible():
                targets.nth(i).hover()  # an injected onmouseover would fire here
        page.wait_for_timeout(500)  # give an injected handler or image load time to act
        handlers = page.eval_on_selector_all(
            "#sam-labels *, #sam-objects *",
            "els => els.flatMap(e => e.getAttributeNames().filter(n => n.startsWith('on')))",
        )
        page.screenshot(path=str(screenshots / "hostile-labels.png"))
        shown = page.inner_text("#sam-labels")
        swatches = page.eval_on_selector_all(
            "#sam-labels .sam-swatch, #sam-objects .sam-swatch",
            "els => els.map(e => [e.getAttribute('style'), getComputedStyle(e).backgroundImage])",
        )
        images = page.locator("#sam-labels img, #sam-objects img").count()
    context.close()
    assert dialogs == [] and handlers == []
    assert hosts <= {"127.0.0.1", ""}, hosts  # "": data: URIs
    assert all(name in shown for name in NAMES), shown
    assert images == 0
    assert swatches and all(
        style.startswith("background:#") and len(style) == len("background:#rrggbb")
        and image == "none"
        for style, image in swatches
    ), swatches  # fmt: skip
