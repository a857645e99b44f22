"""The app on a SAM 2 model: the status line names the family, and an imported mask re-edited
with a click reaches the decoder laid out as SAM 2's low-res masks are (the whole image
squashed to 256x256, not SAM 1's padded square)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sam.masks import mask_to_logits
from ui import actions
from ui.handlers import Handlers
from ui.models import ModelManager
from ui.state import Session


def test_status_line_names_the_family(sam2_page: Handlers):
    shown = sam2_page.on_load(Session())["model_status"]
    assert "sam-ok" in shown
    assert "(sam2-hiera-tiny) on <b>cpu</b>" in shown  # an HF folder without 2.1 markers


def test_reediting_an_imported_mask_feeds_it_in_sam2_layout(
    sam2_page: Handlers, sam2_manager: ModelManager, truck_path: Path
):
    session = Session()
    list(sam2_page.on_upload(session, str(truck_path)))
    assert session.doc.image is not None, session.message
    height, width = session.doc.image.size
    imported = np.zeros((height, width), bool)
    imported[height // 4 : height // 2, width // 3 : 2 * width // 3] = True
    actions.add_objects(session, [(imported, None)], "import")
    (obj,) = session.doc.objects
    assert obj.logits is None  # an imported mask has no decoder logits

    actions.edit_object(session, obj.id)
    x, y = width // 2, 3 * height // 8
    sam2_page.prompt(session, {"kind": "point", "x": x, "y": y})
    assert not session.message_is_error, session.message

    predictor = sam2_manager.predictor()
    predictor.set_image(session.doc.image.array)
    expected = predictor.engine.mask_prompt(imported)
    # SAM 1's layout puts the mask in the top part of the square only: a different prompt.
    assert not np.allclose(expected, mask_to_logits(imported))
    masks, scores, logits = predictor.predict(
        point_coords=np.array([[x, y]]),
        point_labels=np.array([1]),
        mask_input=expected,
        multimask_output=False,
    )
    cands = session.doc.candidates
    np.testing.assert_allclose(cands.logits, logits, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(cands.mask.to_array(), masks[0])
    assert cands.score == pytest.approx(float(scores[0]), abs=1e-4)
    sam2_page.on_accept(session)
    (edited,) = session.doc.objects
    assert edited.id == obj.id and edited.logits is not None
