"""Segment everything's Settings start at the loaded model's family defaults: SAM 2's generator
keeps candidates from a predicted IoU of 0.8, SAM's from 0.88. A value the user moved stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from sam.automatic import AutoMaskConfig
from ui.handlers import Handlers
from ui.handlers.proposals import FAMILY_SETTINGS
from ui.models import ModelManager
from ui.state import Session

SAM1 = AutoMaskConfig.for_family("sam")
SAM2 = AutoMaskConfig.for_family("sam2")


def sliders(config: AutoMaskConfig, **moved: float) -> list[float]:
    """What the page's Settings show (FAMILY_SETTINGS order): ``config`` with ``moved`` on top."""
    return [moved.get(name, getattr(config, field)) for name, field in FAMILY_SETTINGS.items()]


def shown_value(updates: dict, name: str) -> float | None:
    """The value an update sets on slider ``name``; None when the slider is left alone."""
    return updates[name]["value"] if name in updates else None


@pytest.fixture
def page(tmp_path: Path, tiny_checkpoint: Path, tiny_sam2_checkpoint: Path) -> Handlers:
    """The app started on the tiny SAM, with the tiny SAM 2 folder allowed in the picker."""
    manager = ModelManager(
        str(tiny_checkpoint), device="cpu", models_dirs=[tiny_sam2_checkpoint.parent]
    )
    return Handlers(manager, tmp_path / "media", tmp_path / "export", [])


def test_page_started_on_sam2_shows_sam2_defaults(tmp_path: Path, tiny_sam2_checkpoint: Path):
    manager = ModelManager(str(tiny_sam2_checkpoint), device="cpu")
    page = Handlers(manager, tmp_path / "media", tmp_path / "export", [])
    session = Session()
    assert shown_value(page.on_load(session), "pred_iou") == SAM2.pred_iou_thresh == 0.8
    assert "pred_iou" not in page.on_tick(session)  # set once: later polls leave it alone
    # A page opened while the startup model was still loading gets them from the poll.
    assert shown_value(page.on_tick(Session()), "pred_iou") == 0.8


def test_sam_page_keeps_sams_defaults(page: Handlers):
    assert "pred_iou" not in page.on_load(Session())  # the sliders already show SAM's 0.88


def test_switching_family_moves_untouched_settings(page: Handlers, tiny_sam2_checkpoint: Path):
    session = Session()
    page.on_load(session)
    *_, last = page.on_model_change(session, str(tiny_sam2_checkpoint), *sliders(SAM1))
    assert not session.message_is_error, session.message
    assert shown_value(last, "pred_iou") == 0.8
    # Back to SAM: its 0.88 again.
    *_, last = page.on_model_change(session, page.manager.default_source, *sliders(SAM2))
    assert shown_value(last, "pred_iou") == SAM1.pred_iou_thresh == 0.88


def test_a_value_the_user_set_survives_a_switch(page: Handlers, tiny_sam2_checkpoint: Path):
    session = Session()
    page.on_load(session)
    shown = sliders(SAM1, pred_iou=0.5)
    *_, last = page.on_model_change(session, str(tiny_sam2_checkpoint), *shown)
    assert not session.message_is_error, session.message
    assert "pred_iou" not in last
