"""``python app.py --model <SAM 2.1 folder>`` end to end in Chromium: the page names the family,
the painted candidates are the engine's, Enter accepts an object, and clicks decoded in the
browser (SAM 2's ONNX graph and its three feature maps) equal the engine's masks."""

from __future__ import annotations

import numpy as np
import pytest

from sam import SamPredictor, load_model
from sam.image_io import load_image

from .test_app_browser import TIMEOUT, TRUCK, open_app, screen_xy, upload, wait_objects, wait_points
from .test_browser_decode import assert_decodes_like_the_engine, open_ready

pytestmark = pytest.mark.browser


def test_click_and_accept_with_a_sam2_model(page, app_launcher, tiny_sam2_checkpoint, tmp_path):
    predictor = SamPredictor(load_model(str(tiny_sam2_checkpoint), device="cpu"))
    predictor.set_image(load_image(str(TRUCK)))
    masks, _, _ = predictor.predict(
        point_coords=np.array([[500, 375]]), point_labels=np.array([1]), multimask_output=True
    )
    args = ["--model", str(tiny_sam2_checkpoint), "--device", "cpu"]
    with app_launcher(args, tmp_path / "app.log") as app:
        open_app(page, app.url)
        assert "(sam2-hiera-tiny) on cpu" in page.inner_text("#sam-model-status")
        upload(page, TRUCK)
        page.mouse.click(*screen_xy(page, 500.5, 375.5))
        wait_points(page, 1)
        page.wait_for_selector("#sam-stage .sam-overlay", timeout=TIMEOUT)
        page.wait_for_function(
            "document.querySelectorAll('#sam-cands .sam-cand').length === 3", timeout=TIMEOUT
        )
        # SAM 2's decoder is exported for the page too (the first click went to the server).
        page.wait_for_selector("#sam-stage .sam-stage[data-decoder-state='ready']", timeout=TIMEOUT)
        page.keyboard.press("Enter")
        wait_objects(page, 1)
        # The accepted object is the engine's best candidate for that click, to the pixel.
        assert f"{int(masks[0].sum()):,} px" in page.inner_text("body")
        assert "Traceback" not in app.log_text()


def test_browser_masks_equal_the_sam2_engines(page, app_launcher, tiny_sam2_checkpoint, tmp_path):
    """SAM 2 in the page's worker: square input frame, "not a point" token, direct upscale and
    the single-mask stability choice, against the engine for the same prompts."""
    engine = SamPredictor(load_model(str(tiny_sam2_checkpoint), device="cpu"))
    engine.set_image(load_image(str(TRUCK)))
    args = ["--model", str(tiny_sam2_checkpoint), "--device", "cpu"]
    with app_launcher(args, tmp_path / "app.log") as app:
        open_ready(page, app.url)
        assert_decodes_like_the_engine(page, engine)
        assert not page.js_errors
        assert "Traceback" not in app.log_text()
