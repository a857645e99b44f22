"""The page says which model family and size it runs (SAM ViT or SAM 2.1 Hiera)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ui.handlers import Handlers
from ui.models import ModelManager
from ui.state import Session


def test_loading_a_sam2_checkpoint_names_its_family(
    tmp_path: Path, tiny_checkpoint: Path, tiny_sam2_meta_checkpoint: Path
):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_sam2_meta_checkpoint, models / "sam2.1_hiera_tiny.pt")
    manager = ModelManager(str(tiny_checkpoint), device="cpu", models_dirs=[models])
    page = Handlers(manager, tmp_path / "media", tmp_path / "export", [])
    session = Session()
    list(page.on_model_change(session, "sam2.1_hiera_tiny.pt"))
    assert not session.message_is_error, session.message
    assert "(sam2.1-hiera-tiny) on cpu" in session.message
    assert manager.status(session.model_source).family == "sam2.1-hiera-tiny"
    assert manager.load().family == "sam"  # the tiny SAM's ViT width is no released size
