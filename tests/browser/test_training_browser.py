"""Train on my annotations, in the real app: a folder project with accepted objects, a short
run started from the panel, its progress and before/after table, then "Use this model"
switches the session and a click on the image is segmented by the new model."""

from __future__ import annotations

import pytest
from synthetic_shapes import SHAPES, make_dataset

from sam.dataset.store import AnnotationStore
from sam.evaluation import read_coco

from .test_app_browser import TIMEOUT, screen_xy, wait_points
from .test_project_browser import open_project

pytestmark = pytest.mark.browser

TRAINING_TIMEOUT = 600_000  # a tiny run on a loaded 2-core machine takes about a minute


def annotated_project(root):
    """Three synthetic images whose shapes are stored as accepted objects; the folder."""
    annotations, images_dir = make_dataset(root, n_images=3, seed=5, size=(96, 128))
    with AnnotationStore.for_folder(images_dir) as store:
        for image in read_coco(annotations, images_dir):
            for obj in image.objects:
                label = store.ensure_label(obj.label or SHAPES[0])
                store.add_object(store.image_id(image.name), obj.mask(), label.id, 1.0)
    return images_dir


def test_train_from_the_panel_then_use_the_model(
    browser, app_launcher, tiny_checkpoint, tmp_path, screenshots
):
    folder = annotated_project(tmp_path)
    args = ["--images", str(folder), "--model", str(tiny_checkpoint), "--device", "cpu"]
    page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    with app_launcher(args, tmp_path / "app.log") as app:
        open_project(page, app.url, "shapes_000.png")
        page.click("#sam-train-box >> text=Train on my annotations")
        page.wait_for_selector("#sam-train-start", state="visible", timeout=TIMEOUT)
        page.fill("#sam-train-epochs input", "1")
        page.press("#sam-train-epochs input", "Tab")
        page.click("#sam-train-start")

        # Progress while it runs; annotation is not blocked meanwhile.
        running = page.wait_for_selector("#sam-train-status .sam-running", timeout=TIMEOUT)
        assert "finetuned-" in running.inner_text()
        page.locator("#sam-train-box").screenshot(path=str(screenshots / "training-running.png"))
        page.evaluate("window.scrollTo(0, 0)")  # the panel is below the fold
        page.mouse.click(*screen_xy(page, 64.5, 48.5))
        wait_points(page, 1)
        page.keyboard.press("Escape")
        wait_points(page, 0)

        done = page.wait_for_selector(
            "#sam-train-status:has-text('Done')", timeout=TRAINING_TIMEOUT
        )
        assert "holds the model" in done.inner_text()
        table = page.locator("#sam-train-metrics table")
        assert "held-out objects" in table.inner_text()
        assert table.locator("tr").count() == 5  # header + mIoU@1, @3, box, NoC@85
        page.wait_for_selector("#sam-train-curves img", timeout=TIMEOUT)
        page.locator("#sam-train-box").screenshot(path=str(screenshots / "training-done.png"))

        page.click("#sam-train-use")
        page.wait_for_selector("#sam-model-status .sam-ok:has-text('finetuned-')", timeout=TIMEOUT)
        page.evaluate("window.scrollTo(0, 0)")
        page.mouse.click(*screen_xy(page, 64.5, 48.5))
        wait_points(page, 1)
        page.wait_for_function(
            "document.querySelectorAll('#sam-cands .sam-cand').length === 3", timeout=TIMEOUT
        )
        page.wait_for_selector("#sam-stage .sam-overlay", timeout=TIMEOUT)
        page.screenshot(path=str(screenshots / "training-used.png"))

        # Stopping the app (SIGTERM) during a run stops it cleanly and keeps its checkpoint.
        page.fill("#sam-train-epochs input", "50")
        page.press("#sam-train-epochs input", "Tab")
        page.click("#sam-train-start")
        page.wait_for_selector("#sam-train-status .sam-running", timeout=TIMEOUT)
        app.proc.terminate()
        assert app.proc.wait(timeout=180) == 0, app.log_text()
        log = app.log_text()
    assert "Loaded " in log and "finetuned-" in log
    assert "stopping the training run" in log and log.count(" stopped: best epoch") == 1
    models = sorted((folder / ".sam-annotator" / "models").iterdir())
    assert len(models) == 2 and all((m / "model.safetensors").is_file() for m in models)
    assert str(tmp_path) not in page.inner_text("#sam-train-box")
    assert errors == []
