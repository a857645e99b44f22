"""``python app.py --model <SAM 2.1 folder>`` end to end in Chromium: the page names the family,
clicks are decoded on the server (SAM 2 has no browser decoder), the painted candidates are the
engine's, and Enter accepts an object."""

from __future__ import annotations

import numpy as np
import pytest

from sam import SamPredictor, load_model
from sam.image_io import load_image

from .test_app_browser import TIMEOUT, TRUCK, open_app, screen_xy, upload, wait_objects, wait_points

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
        # The ONNX export refuses SAM 2: the stage says clicks stay on the server.
        page.wait_for_selector("#sam-stage .sam-stage[data-decoder-state='off']", timeout=TIMEOUT)
        page.keyboard.press("Enter")
        wait_objects(page, 1)
        # The accepted object is the engine's best candidate for that click, to the pixel.
        assert f"{int(masks[0].sum()):,} px" in page.inner_text("body")
        assert "Traceback" not in app.log_text()
